package control

import (
	"context"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

var _ registry.EventSource = (*Control)(nil)

// SetEvents makes event streams run on s: its etcd client (one that
// honours WithRequireLeader) and its metrics. registry-service sets one
// before serving; without, streams run on Control's client.
func (c *Control) SetEvents(s *events.Streamer) { c.ev = s }

// Events streams the control plane's events (registry.EventSource),
// with a heartbeat every events.DefaultHeartbeat while nothing happens.
func (c *Control) Events(ctx context.Context, req registry.EventsRequest, fn func(registry.Event) error) error {
	s := c.ev
	if s == nil {
		s = events.New(c.cli, events.Config{Logger: c.log, Now: c.cfg.Now})
	}
	return s.Stream(ctx, events.Request{EventsRequest: req}, fn)
}
