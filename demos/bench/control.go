package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry"
)

// What the desired-state scenarios use: the registry's HTTP API (scale,
// status), its Prometheus metrics, and the processes of an instance.

// apiScale sets service's desired count on compute ("": physarum) through
// the registry's HTTP API, as an operator's curl does.
func (n *network) apiScale(ctx context.Context, hc *http.Client, service, compute string, number int) error {
	body, err := json.Marshal(map[string]any{"number": number, "compute": compute})
	if err != nil {
		return err
	}
	url := n.api + "/service/" + service + "/scale"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// apiStatus reads GET /service/<name>/status from the registry's HTTP API.
func (n *network) apiStatus(ctx context.Context, hc *http.Client, service string) (registry.ServiceStatus, error) {
	var st registry.ServiceStatus
	return st, n.apiGet(ctx, hc, "/service/"+service+"/status", &st)
}

// apiStatusAll reads GET /status: every service's status, by name.
func (n *network) apiStatusAll(ctx context.Context, hc *http.Client) (map[string]registry.ServiceStatus, error) {
	var all map[string]registry.ServiceStatus
	return all, n.apiGet(ctx, hc, "/status", &all)
}

// maxAPIAnswer bounds what is read of an answer of the HTTP API (the
// status of 200 services is several hundred KB).
const maxAPIAnswer = 64 << 20

func (n *network) apiGet(ctx context.Context, hc *http.Client, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.api+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 512)])))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// livePinned returns a status's live pinned instances (pending, starting
// or running; not on-demand, not of explicit deploys).
func livePinned(st registry.ServiceStatus) []registry.InstanceStatus {
	var out []registry.InstanceStatus
	for _, in := range st.Instances {
		if in.OnDemand || in.Compute == "" {
			continue
		}
		switch in.State {
		case registry.StatePending, registry.StateStarting, registry.StateRunning:
			out = append(out, in)
		}
	}
	return out
}

// pinnedLeft counts a status's pinned instances in any state.
func pinnedLeft(st registry.ServiceStatus) int {
	k := 0
	for _, in := range st.Instances {
		if !in.OnDemand && in.Compute != "" {
			k++
		}
	}
	return k
}

// statusPoll is how often the desired-state scenarios read status.
const statusPoll = 50 * time.Millisecond

// waitStatus reads service's status every statusPoll until done says
// yes, and returns the time the status that said so arrived. It fails
// after timeout.
func (n *network) waitStatus(ctx context.Context, hc *http.Client, service string, timeout time.Duration,
	done func(registry.ServiceStatus) bool) (time.Time, registry.ServiceStatus, error) {
	deadline := time.Now().Add(timeout)
	var st registry.ServiceStatus
	var err error
	for {
		st, err = n.apiStatus(ctx, hc, service)
		at := time.Now()
		if err == nil && done(st) {
			return at, st, nil
		}
		if at.After(deadline) {
			if err != nil {
				return at, st, fmt.Errorf("%s: not reached within %s: %w", service, timeout, err)
			}
			return at, st, fmt.Errorf("%s: not reached within %s: running_resources %d, desired %d, starting %d, failed %d, %d pinned instances",
				service, timeout, st.RunningResources, st.Desired, st.Starting, st.Failed, pinnedLeft(st))
		}
		if err := sleepCtx(ctx, statusPoll); err != nil {
			return at, st, err
		}
	}
}

// promSamples are the series of one scrape of a Prometheus endpoint:
// "name{labels}" → value.
type promSamples map[string]float64

// scrape reads a Prometheus text endpoint.
func scrape(ctx context.Context, hc *http.Client, url string) (promSamples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	out := promSamples{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// metricName is the name part of a series.
func metricName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// promLabel is the value of label name in a series ("" when it has none).
func promLabel(series, name string) string {
	_, rest, ok := strings.Cut(series, "{")
	if !ok {
		return ""
	}
	_, v, ok := strings.Cut(","+rest, ","+name+`="`)
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, `"`)
	return v
}

// sum adds every series of the metric name.
func (p promSamples) sum(name string) float64 {
	s := 0.0
	for k, v := range p {
		if metricName(k) == name {
			s += v
		}
	}
	return s
}

// by adds the series of the metric name by the value of one label.
func (p promSamples) by(name, lbl string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range p {
		if metricName(k) == name {
			out[promLabel(k, lbl)] += v
		}
	}
	return out
}

// killInstance sends SIGKILL to every process of instance id (its proxy
// and the service), as a crash would, and returns their pids.
func killInstance(id string) ([]int, error) {
	pids := launch.InstancePIDs(id)
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process of instance %s found (by %s in /proc/*/environ)", id, instenv.InstanceID)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pids, nil
}
