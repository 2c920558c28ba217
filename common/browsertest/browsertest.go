// Package browsertest starts headless Chromium, driven with chromedp, for
// the dashboard's browser tests, its screenshot and its bench. The
// browser is Debian's chromium package (.ci/run installs it); nothing
// downloads one at run time.
package browsertest

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoBrowser is returned when no Chromium is installed.
var ErrNoBrowser = errors.New("no chromium or chromium-browser on PATH (Debian: apt-get install -y chromium)")

// Path is the browser's executable, or "" when there is none.
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start launches a headless browser with a window of width×height and
// returns a tab's context; cancel closes the browser.
func Start(ctx context.Context, width, height int) (context.Context, context.CancelFunc, error) {
	path := Path()
	if path == "" {
		return nil, nil, ErrNoBrowser
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests and CI run as root
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	if err := chromedp.Do(tab); err != nil { // starts the browser
		cancelTab()
		cancelAlloc()
		return nil, nil, err
	}
	return tab, func() { cancelTab(); cancelAlloc() }, nil
}

// T is Start for a test: it skips the test, saying why, when no browser
// is installed, and closes the browser at the test's end.
func T(t testing.TB, width, height int) context.Context {
	t.Helper()
	if Path() == "" {
		t.Skip("browser test skipped: " + ErrNoBrowser.Error())
	}
	ctx, cancel, err := Start(t.Context(), width, height)
	if err != nil {
		t.Fatalf("start headless chromium: %v", err)
	}
	t.Cleanup(cancel)
	return ctx
}

// Eval runs a JavaScript expression in the page and returns its value,
// failing t after 10 s.
func Eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// Do runs steps in the page, failing t after 15 s.
func Do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// WaitFor polls a JavaScript predicate in the page until it is true,
// failing t with what it waited for after timeout.
func WaitFor(t testing.TB, ctx context.Context, what, js string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, js, err)
	}
}
