module example.com/inline_demo

go 1.19
