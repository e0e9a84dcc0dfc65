module example.com/go_exec

go 1.19
