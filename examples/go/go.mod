module uv-ffi/examples/go

go 1.19
