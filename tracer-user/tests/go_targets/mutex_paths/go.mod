module example.com/mutex_paths

go 1.19
