//go:build !noship

package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// browserWait bounds each step in the browser: the page shows a change
// within a second or so (its feed looks every second).
const browserWait = 20 * time.Second

// browser is a headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go
}

// startBrowser starts Debian's chromium (make test-deps installs it) with
// a profile of its own, and stops it when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	chromium := brokertest.Require(t, "chromium")
	profile, err := os.MkdirTemp("", "wsgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helper processes may write for a moment after it
		// stopped.
		for range 50 {
			if err := os.RemoveAll(profile); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
	)
	ctx, stopTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		stopTab()
		stopAlloc()
	})
	// The first run starts the browser, and must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return &browser{t: t, ctx: ctx, dir: t.TempDir()}
}

// do runs steps within browserWait; on failure it shows the page's text.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, b.text())
	}
}

// text is what the page shows, for failure messages.
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return text
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// screenshot writes the whole page as a PNG into the test's temporary
// directory, and into $WSGATE_SCREENSHOTS when set, to be looked at.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		b.t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if size := img.Bounds().Size(); size.X < 300 || size.Y < 300 {
		b.t.Errorf("screenshot of %v, too small to show the page", size)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if dir := os.Getenv("WSGATE_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
			b.t.Error(err)
		}
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// TestStatusPageInBrowser drives the admin address's status page in
// headless Chromium, against a gateway with an admin token, SHIP pairing
// by approval and the done protocol: the page asks for the token; a device
// that connects appears without a reload, its messages counted, and goes
// when it disconnects; a SHIP device waiting for approval is approved with
// the page's button, finishes its handshake and appears as a device. The
// page fits a phone's width. Screenshots go to the test's temporary
// directory.
func TestStatusPageInBrowser(t *testing.T) {
	g := startShipGateway(t, "[protocols.ship.timers]\nclose = \"100ms\"\n")
	b := startBrowser(t) // after the gateway: it stops first
	page := "http://" + g.adminAddr + "/"

	signIn := func(token string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("sign-in")),
			chromedp.SendKeys(chromedp.ID("token"), token),
			chromedp.Click(chromedp.CSS(`#sign-in button[type="submit"]`)),
		)
	}
	b.do("open the page and give a wrong token",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(page),
		signIn("guess"),
		waitText("#sign-in-reason", "did not accept that token"),
	)
	b.do("give the token",
		signIn(shipAdminToken),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#protocols tr[data-id="ship"]`)),
	)
	if got := eval[string](b, `document.getElementById("gateway-id").textContent`); got != "test-gw" {
		t.Errorf("gateway id on the page %q, want test-gw", got)
	}
	// The token went into the header of the stream's request, not into
	// the URL, a cookie or the page's storage for later sessions.
	if url := eval[string](b, `location.href`); url != page {
		t.Errorf("the page is at %s, want %s", url, page)
	}
	if cookies := eval[string](b, `document.cookie`); cookies != "" {
		t.Errorf("the page set cookies: %q", cookies)
	}
	if n := eval[int](b, `localStorage.length`); n != 0 {
		t.Errorf("the page kept %d items in local storage", n)
	}
	// A mark that a reload would wipe: everything below happens without.
	eval[bool](b, `window.notReloaded = true`)

	// A device connects: the page shows it, then counts its messages.
	dev := dialDone(t, g.wsURL, "kitchen-sensor")
	row := `#devices tr[data-id="kitchen-sensor"]`
	b.do("the device appears", chromedp.WaitVisible(chromedp.CSS(row)))
	if err := dev.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"telemetry","data":{"t":21.5},"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	// hello and pub in; welcome and ack out.
	b.do("its messages are counted", textIs(row+` td[data-label="Messages in"]`, "2"), textIs(row+` td[data-label="Messages out"]`, "2"))
	cells := eval[[]string](b, `[...document.querySelectorAll('`+row+` > *')].map(c => c.textContent)`)
	if len(cells) != 7 || cells[0] != "kitchen-sensor" || cells[1] != "done" || !strings.HasPrefix(cells[2], "127.0.0.1:") || cells[3] == "–" || cells[6] == "–" {
		t.Errorf("device row %q; want id, protocol, address, since, 2, 2, last message", cells)
	}

	// Another one comes in order.
	garage := dialDone(t, g.wsURL, "garage-door")
	b.do("the second device appears", chromedp.WaitVisible(chromedp.CSS(`#devices tr[data-id="garage-door"]`)))
	if ids := eval[[]string](b, `[...document.querySelectorAll('#devices tbody tr')].map(r => r.dataset.id)`); !slices.Equal(ids, []string{"garage-door", "kitchen-sensor"}) {
		t.Errorf("device rows %q, want them by id", ids)
	}
	garage.Close()

	// It disconnects: the page shows that.
	b.do("the second device goes", chromedp.WaitNotPresent(chromedp.CSS(`#devices tr[data-id="garage-door"]`)))
	dev.Close()
	b.do("the device goes", chromedp.WaitNotPresent(chromedp.CSS(row)), waitText("#notice", "Disconnected: kitchen-sensor."))

	// A SHIP device waits for approval; the page's button approves it.
	p := dialShipPeer(t, g.shipURL, g.ski, "heatpump-7")
	p.hello("pending")
	peer := fmt.Sprintf(`#peers tr[data-id="%s"]`, p.id.SKI)
	b.do("the pending peer appears", chromedp.WaitVisible(chromedp.CSS(peer+`[data-state="pending"]`)))
	b.screenshot("status-page-pending.png")
	b.do("approve it", chromedp.Click(chromedp.CSS(peer+` button[data-action="approve"]`)))
	p.expect("connectionHello", `"ready"`)
	p.afterHello("heatpump-7")
	waitShipStatus(t, g.sub, "heatpump-7", "online")
	b.do("the peer is trusted and connected",
		chromedp.WaitVisible(chromedp.CSS(peer+`[data-state="trusted"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#devices tr[data-id="heatpump-7"]`)),
	)
	if disabled := eval[bool](b, `document.querySelector('`+peer+` button[data-action="approve"]').disabled`); !disabled {
		t.Error("the approve button of a trusted peer is enabled")
	}
	b.screenshot("status-page.png")

	// On a phone's screen the page is one column: nothing sticks out.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait))
	if wide := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); wide {
		t.Errorf("the page is %d px wide on a %d px screen", eval[int](b, `document.documentElement.scrollWidth`), eval[int](b, `window.innerWidth`))
	}
	if label := eval[string](b, `getComputedStyle(document.querySelector('#devices tbody td'), '::before').content`); label != `"Protocol"` {
		t.Errorf("device cells on a phone are labelled %s, want their column", label)
	}
	b.screenshot("status-page-phone.png")

	p.closeShip()
	waitShipStatus(t, g.sub, "heatpump-7", "offline")
	b.do("the SHIP device goes", chromedp.WaitNotPresent(chromedp.CSS(`#devices tr[data-id="heatpump-7"]`)))
	if !eval[bool](b, `window.notReloaded === true`) {
		t.Error("the page was reloaded")
	}
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return waitForText(sel, want, strings.Contains)
}

// textIs waits until the element's text is want.
func textIs(sel, want string) chromedp.Action[chromedp.Void] {
	return waitForText(sel, want, func(text, want string) bool { return text == want })
}

func waitForText(sel, want string, match func(text, want string) bool) chromedp.Action[chromedp.Void] {
	read := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			text, err := read(ctx, t)
			if err != nil {
				return err
			}
			if match(text, want) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s shows %q, not %q: %w", sel, text, want, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}
