module example.com/go_defers

go 1.19
