package proto

// Regenerate with protoc, protoc-gen-go and protoc-gen-connect-go on PATH (make proto).
//go:generate protoc --proto_path=. --go_out=. --go_opt=module=trellis/internal/proto --connect-go_out=. --connect-go_opt=module=trellis/internal/proto trellis.proto
