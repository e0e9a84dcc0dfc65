module example.com/go_parked

go 1.19
