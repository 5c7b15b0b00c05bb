package pluginpb

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The codec must read what gRPC hands it however the transport cut it up,
// and leave gRPC's own messages (go-plugin's services) to the default
// codec.
func TestCodecRoundTrip(t *testing.T) {
	batch := func(n, size int) *Actions {
		a := &Actions{}
		for i := range n {
			a.Actions = append(a.Actions, &Action{Action: &Action_Publish{Publish: &Frame{
				Id: uint64(i), Channel: "state", Payload: bytes.Repeat([]byte{byte(i)}, size), Qos: 1, WantsAck: true}}})
		}
		return a
	}
	tests := []struct {
		name   string
		msg    *Actions
		pieces int // the buffers the transport delivers it in
	}{
		{"small, one buffer", batch(3, 10), 1},
		{"small, in pieces", batch(3, 10), 4},
		{"one frame", batch(100, 100), 1},
		{"larger than the pool's tiers, in pieces", batch(40, 2000), 7},
	}
	c := newCodec()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := c.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			wire := data.Materialize()
			data.Free()
			if !proto.Equal(decodeDefault(t, wire), tt.msg) {
				t.Fatal("the default codec reads something else")
			}
			got := &Actions{}
			if err := c.Unmarshal(split(wire, tt.pieces), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.msg) {
				t.Fatal("decoded batch differs")
			}
		})
	}
	t.Run("fallback", func(t *testing.T) {
		for _, m := range []proto.Message{&emptypb.Empty{}, structpb.NewStringValue("go-plugin")} {
			data, err := c.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, m) {
				t.Fatalf("%T: decoded %v, want %v", m, got, m)
			}
		}
	})
}

func decodeDefault(t *testing.T, wire []byte) *Actions {
	t.Helper()
	m := &Actions{}
	if err := proto.Unmarshal(wire, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// split cuts b into n buffers of about equal size.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	step := (len(b) + n - 1) / n
	for len(b) > 0 {
		k := min(step, len(b))
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:k])))
		b = b[k:]
	}
	return s
}

func TestFitActions(t *testing.T) {
	publish := func(size int) *Action {
		return &Action{Action: &Action_Publish{Publish: &Frame{Channel: "c", Payload: make([]byte, size)}}}
	}
	tests := []struct {
		name  string
		sizes []int
		want  []int // the batches' lengths
	}{
		{"all fit", []int{10, 10, 10}, []int{3}},
		{"cut where the next would not fit", []int{8000, 8000, 8000, 10}, []int{2, 2}},
		{"an action larger than a batch goes alone", []int{10, 40000, 10}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rest []*Action
			for _, s := range tt.sizes {
				rest = append(rest, publish(s))
			}
			var got []int
			for len(rest) > 0 {
				n := FitActions(rest)
				batch := &Actions{Actions: rest[:n]}
				if n > 1 && batch.SizeVT() > MaxBatchBytes {
					t.Fatalf("a batch of %d is %d bytes, over %d", n, batch.SizeVT(), MaxBatchBytes)
				}
				got = append(got, n)
				rest = rest[n:]
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("batches %v, want %v", got, tt.want)
			}
		})
	}
}
