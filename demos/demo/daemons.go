package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

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
			wg.Go(func() { closeDaemon(d) })
		}
	}
	wg.Wait()
}

// closeDaemon stops d and removes its directory. A daemon that ran a
// container leaves the mount of its default network namespace under its
// exec root, which Close's removal cannot go through: it is detached here
// first.
func closeDaemon(d *dockerd.Daemon) {
	d.Close()
	if _, err := os.Stat(d.Dir); err != nil {
		return
	}
	for _, m := range slices.Backward(mountsUnder(d.Dir)) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(d.Dir)
}

// mountsUnder lists the mount points below dir, in /proc/self/mountinfo's
// order (parents before their children).
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			out = append(out, fields[4])
		}
	}
	return out
}

// daemonsLine says where the sites' containers run, for the demo's start.
func daemonsLine(ds []*dockerd.Daemon) string {
	var parts []string
	for i, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %s", sites[i].name, d.Host))
	}
	return strings.Join(parts, ", ")
}
