package pluginpb

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// vtMessage is the code protoc-gen-go-vtproto generates for this
// contract's messages (plugin_vtproto.pb.go): marshalling without
// reflection, a few times cheaper than the generic protobuf runtime on the
// per-message stream.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
	UnmarshalVT(src []byte) error
}

// codec is gRPC's protobuf codec with the generated code for this
// contract's messages; the wire format is the same, so either side may use
// the default codec. go-plugin's own services share the connection and
// fall back to the default.
type codec struct{ fallback encoding.CodecV2 }

// largeMessage is the size beyond which gRPC's buffer pool hands out 1 MiB
// buffers.
const largeMessage = 32 << 10

func newCodec() codec { return codec{fallback: encoding.GetCodecV2(proto.Name)} }

// Name is the default codec's, so that the content type is unchanged.
func (codec) Name() string { return proto.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	if len(data) == 1 || data.Len() <= largeMessage {
		// In place when it came in one HTTP/2 frame (MaxBatchBytes keeps
		// batches to one), else through a pooled buffer. UnmarshalVT
		// copies what it keeps, so the buffer goes back at once.
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		return m.UnmarshalVT(buf.ReadOnlyData())
	}
	// gRPC's pool serves anything larger from 1 MiB buffers it clears on
	// every use; a buffer of the message's own size costs less.
	return m.UnmarshalVT(data.Materialize())
}
