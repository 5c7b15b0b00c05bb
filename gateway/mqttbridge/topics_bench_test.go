package mqttbridge

import "testing"

// BenchmarkUplinkTopic is the per-frame cost of building and checking a
// frame's topic.
func BenchmarkUplinkTopic(b *testing.B) {
	for _, tt := range []struct{ name, template string }{
		{"default", DefaultUplinkTemplate},
		{"custom", "site/{gateway}/{device}/data/{channel}"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			topics, err := NewTopics("wsgate", "hub-1", tt.template)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := topics.Uplink("kitchen-sensor", "sensors/temp"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
