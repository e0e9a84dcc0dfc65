module example.com/go_abba

go 1.19
