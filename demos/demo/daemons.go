package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/physarum-p2p/physarum/common/dockerd"
)

// Values of -daemons (DEMO_DAEMONS).
const (
	daemonsShared   = "shared"
	daemonsSeparate = "separate"
)

// startDaemons starts a Docker daemon of the demo's own for every site,
// at once. When one cannot start, those that did are stopped again and
// the error says why.
func startDaemons(ctx context.Context) ([]*dockerd.Daemon, error) {
	out := make([]*dockerd.Daemon, len(sites))
	errs := make([]error, len(sites))
	var wg sync.WaitGroup
	for i := range sites {
		wg.Go(func() { out[i], errs[i] = dockerd.Start(ctx, "") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeDaemons(out)
		// Every site fails for the same reason (root, dockerd missing):
		// say it once.
		return nil, errs[slices.IndexFunc(errs, func(e error) bool { return e != nil })]
	}
	return out, nil
}

// closeDaemons stops the daemons at once, with whatever containers they
// still run, and removes their directories.
func closeDaemons(ds []*dockerd.Daemon) {
	var wg sync.WaitGroup
	for _, d := range ds {
		if d != nil {
			wg.Go(d.Close)
		}
	}
	wg.Wait()
}

// daemonsLine says where the sites' containers run, for the demo's start.
func daemonsLine(ds []*dockerd.Daemon) string {
	var parts []string
	for i, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %s", sites[i].name, d.Host))
	}
	return strings.Join(parts, ", ")
}
