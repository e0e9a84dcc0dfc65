module example.com/go_rwleak

go 1.19
