module example.com/lock_sites

go 1.19
