package mqttbridge

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/broker"
	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
)

// TestSetCredentials: new credentials (a reload) are used from the next
// connection attempt on: a bridge refused with the old password connects
// once it is given the right one, without being recreated.
func TestSetCredentials(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	b, err := broker.Start(broker.Options{Address: addr, Users: map[string]string{"gw": "new-secret"}}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Limits{MaxRecords: 10, MaxBytes: 1 << 20}, spool.Reject)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	topics, err := NewTopics("wsgate", "gw-creds", DefaultUplinkTemplate)
	if err != nil {
		t.Fatal(err)
	}
	br := New(Config{
		URL: "tcp://" + addr, ClientID: "wsgate-gw-creds", GatewayID: "gw-creds", Topics: topics,
		Username: "gw", Password: "old-secret", KeepAlive: 10 * time.Second, ConnectTimeout: 5 * time.Second,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
	}, sp, testLogger())
	br.Start(router.New(br, testLogger()))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = br.Close(ctx)
	}()
	time.Sleep(300 * time.Millisecond) // several refused attempts
	if br.Stats().Connected {
		t.Fatal("connected with the old password")
	}
	br.SetCredentials("gw", "new-secret")
	deadline := time.Now().Add(10 * time.Second)
	for !br.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("not connected with the new password")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
