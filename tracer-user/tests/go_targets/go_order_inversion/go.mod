module example.com/go_order_inversion

go 1.19
