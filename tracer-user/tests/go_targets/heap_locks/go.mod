module heap_locks

go 1.19
