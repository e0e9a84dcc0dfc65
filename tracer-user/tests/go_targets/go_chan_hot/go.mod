module example.com/go_chan_hot

go 1.19
