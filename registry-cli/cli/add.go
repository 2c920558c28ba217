package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/physarum-p2p/physarum/registry"
)

type addOptions struct {
	dir              string
	noAdd            bool
	useExistingImage bool
	customProxy      string
	proxyCmd         string
	contentID        string
	replicas         int
	// update, when set, rolls the service out to the new definition by
	// this strategy instead of only registering it (registry-cli update).
	update *registry.Strategy
}

const addHelp = `
With DockerConf in the config, builds a Docker image FROM DockerConf.From with
this project's proxy inside as the entrypoint (it runs DockerConf.Cmd as its
child), hands it to the -replicas nearest Docker allocators over the network
(progress on stderr), then registers it:
    registry-cli add [OPTIONS] <config> <image-name> <service-name>
The service is registered once at least one Docker allocator holds the image
(one that had it counts; one that refuses is skipped for the next nearest).
When none takes it, add fails and the image stays built here: register it
later with -use-existing-image. -replicas 0 registers without handing the
image over, for operators who copy images to the nodes themselves.

With Exec in the config, registers a process-runtime service (no Docker
needed; Exec.Command must exist on the nodes that run it: a path, or a
bare name found on each allocator's PATH; add warns when it is not found
on this machine):
    registry-cli add [OPTIONS] <config> <service-name>

The config file (JSON; latencies in milliseconds, CPU in millicores, memory
in MiB):
  {
    "NetworkSoftReq": {"RTT": 5},
    "NetworkHardReq": {"RTT": 10},
    "CpuReq": 100,
    "MemoryReq": 64,
    "Exec": {"Command": "/usr/local/bin/hello", "Args": ["-port", "${SERVICE_PORT}"]}
  }
or, instead of Exec:
    "DockerConf": {"From": "scratch", "Copy": [["hello", "hello"]],
                   "Cmd": "/app/hello -port ${SERVICE_PORT}"}
`

func addCommand() *command {
	return &command{
		name: "add", args: "<config> [<image-name>] <service-name>",
		summary: "Build a service's image (DockerConf) or take its command (Exec), and register it",
		help:    addHelp,
		flags:   addFlags,
		run:     runAdd,
	}
}

// addFlags are add's options, which update shares.
func addFlags(fs *flag.FlagSet, s *session) {
	o := &s.add
	fs.StringVar(&o.dir, "dir", ".", "directory holding the files DockerConf.Copy lists")
	fs.BoolVar(&o.noAdd, "no-add", false, "build the image, but do not hand it to the network nor register the service")
	fs.BoolVar(&o.useExistingImage, "use-existing-image", false, "do not build: register <image-name>, which must exist locally")
	fs.StringVar(&o.customProxy, "custom-proxy", "", "proxy binary to put in the image (default: the proxy beside registry-cli, else one built from this module, static)")
	fs.StringVar(&o.proxyCmd, "proxy-cmd", "", "image entrypoint instead of \"/app/proxy -instance --\" (split like Cmd; keep \"-instance --\" so the service runs as the proxy's child)")
	fs.StringVar(&o.contentID, "content-id", "", "content identifier to record (default: the image ID, or the SHA-256 of Exec.Command)")
	fs.IntVar(&o.replicas, "replicas", 2, "DockerConf: hand the image to this many Docker allocators, nearest first, before registering (0: none; fewer when the network has fewer)")
}

func runAdd(ctx context.Context, s *session, args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return usagef("want <config> <service-name> (Exec) or <config> <image-name> <service-name> (DockerConf)")
	}
	if s.add.replicas < 0 {
		return usagef("-replicas %d: want 0 or more Docker allocators to hand the image to", s.add.replicas)
	}
	conf, err := loadConfig(args[0])
	if err != nil {
		return err
	}
	name := args[len(args)-1]
	if err := registry.ValidateName(name); err != nil {
		return err
	}
	info := conf.info()
	switch {
	case conf.isDocker() && len(args) != 3:
		return usagef("a DockerConf service needs <config> <image-name> <service-name>")
	case !conf.isDocker() && len(args) != 2:
		return usagef("an Exec service takes <config> <service-name> (no image name)")
	case conf.isDocker():
		// A build takes as long as it takes (Ctrl-C stops it): -timeout
		// bounds talking to the registry, which starts afresh after it.
		id, clientMode, err := s.buildImage(s.parent, conf, args[1])
		if err != nil {
			return err
		}
		info.DockerHash, info.ContentHash = id, id
		info.ProxyClientMode = info.ProxyClientMode || clientMode
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(s.parent, s.timeout)
		defer cancel()
	default:
		path, err := exec.LookPath(conf.Exec.Command)
		if err != nil {
			// It may well exist on the nodes, which is what counts.
			path = conf.Exec.Command
			fmt.Fprintf(s.env.Stderr, "warning: command %q is not found on this machine (%v); "+
				"every node that runs %s needs it, on its allocator's PATH when it is a bare name\n",
				conf.Exec.Command, errors.Unwrap(err), name)
		}
		info.ContentHash = execContentID(path)
	}
	if s.add.contentID != "" {
		info.ContentHash = s.add.contentID
	}
	if err := info.Validate(); err != nil {
		return err
	}
	if s.add.noAdd {
		fmt.Fprintf(s.env.Stdout, "not registering %s (-no-add)\n", name)
		return nil
	}
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	out := map[string]any{"Service": name, "Info": info}
	if conf.isDocker() {
		replicas := []replica{}
		if s.add.replicas > 0 {
			if replicas, err = s.distributeImage(ctx, c, info.DockerHash, args[1]); err != nil {
				return err
			}
			// A push takes as long as it makes progress: registering
			// gets its -timeout afresh, as after a build.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(s.parent, s.timeout)
			defer cancel()
		}
		out["Replicas"] = replicas
	}
	if s.add.update != nil {
		return s.rollOut(ctx, c, name, info, out)
	}
	msg, err := c.AddService(ctx, name, info)
	if err != nil {
		return err
	}
	if s.json {
		out["Message"] = msg
		return s.printJSON(out)
	}
	fmt.Fprintln(s.env.Stdout, msg)
	return nil
}

// execContentID hashes the program a process service runs, when it is
// present here, so that operators can tell versions apart.
func execContentID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
