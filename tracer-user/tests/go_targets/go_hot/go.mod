module example.com/go_hot

go 1.19
