module golockbench

go 1.19
