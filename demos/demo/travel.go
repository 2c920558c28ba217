package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/physarum-p2p/physarum/common/logging"
)

// transfer is one image that travelled, as the allocator that took it
// logged it.
type transfer struct {
	at      string // the log line's time
	image   string
	from    string // the site that sent it, or registry-cli
	to      string // the site that took it
	how     string
	bytes   int64
	seconds float64
}

// showTravel, when every site runs on a Docker daemon of its own, makes
// an image travel on need (hello deployed on a site whose daemon lacks
// it), then prints every image transfer the sites' allocators logged.
func (d *demo) showTravel(ctx context.Context) {
	ids := d.imageIDs(ctx)
	d.deployWhereMissing(ctx, ids["hello"])
	var all []transfer
	for _, s := range sites {
		all = append(all, transfersOf(filepath.Join(d.dir, s.name+".log"), s.name)...)
	}
	slices.SortStableFunc(all, func(a, b transfer) int { return strings.Compare(a.at, b.at) })
	service := map[string]string{}
	for name, id := range ids {
		service[id] = name
	}
	fmt.Println()
	if len(all) == 0 {
		fmt.Println("No image travelled: every site held what it ran.")
		fmt.Println()
		return
	}
	fmt.Printf("Images that travelled (each site runs on a Docker daemon of its own; the images were built in site-a's):\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "IMAGE OF\tFROM\tTO\tSIZE\tTIME\tRATE\tHOW")
	pushed, fetched := 0, 0
	for _, t := range all {
		name := service[t.image]
		if name == "" {
			name = shortImage(t.image)
		}
		if strings.HasPrefix(t.how, "fetched") {
			fetched++
		} else {
			pushed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.1f MiB\t%.2f s\t%.1f MiB/s\t%s\n", name, t.from, t.to,
			float64(t.bytes)/(1<<20), t.seconds, float64(t.bytes)/(1<<20)/t.seconds, t.how)
	}
	_ = w.Flush()
	fmt.Println()
	fmt.Printf("%d pushed by registry-cli add before it registered the service (to the nearest sites, up to its -replicas;\n", pushed)
	fmt.Printf("site-a, where the images were built, held them already), %d fetched by a site when an instance needed the image.\n", fetched)
	fmt.Println("Each line is the \"took image\" or \"fetched image\" line of the receiving allocator's log; the time runs")
	fmt.Println("from asking for the image until the receiving daemon has loaded it and its ID checked out.")
	fmt.Println()
}

// imageIDs maps each demo service to the ID of its image, as built in
// site-a's daemon.
func (d *demo) imageIDs(ctx context.Context) map[string]string {
	ids := map[string]string{}
	cli := sites[0].daemon.Client
	for _, name := range services {
		if res, err := cli.ImageInspect(ctx, "physarum-demo/"+name+":latest"); err == nil {
			ids[name] = res.ID
		}
	}
	return ids
}

// deployWhereMissing deploys one instance of hello on the last site whose
// daemon lacks its image, so that one image is seen travelling on need.
func (d *demo) deployWhereMissing(ctx context.Context, id string) {
	if id == "" {
		return
	}
	var target *site
	for _, s := range sites {
		if _, err := s.daemon.Client.ImageInspect(ctx, id); err != nil {
			target = s
		}
	}
	if target == nil {
		say("every site holds hello's image already: no deploy needed to see one travel")
		return
	}
	say("deploying hello on %s, whose Docker daemon lacks its image: %s fetches it from the nearest site that holds it", target.name, target.name)
	start := time.Now()
	if _, err := d.cli(ctx, "deploy", "-node", target.peer, "hello"); err != nil {
		say("deploy on %s failed: %v", target.name, err)
		return
	}
	say("hello runs on %s, %s after the deploy was asked for", target.name, since(start))
}

// transfersOf reads the image transfers an allocator's log reports: images
// it fetched from a peer, and images registry-cli pushed to it.
func transfersOf(logFile, to string) []transfer {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return nil
	}
	siteOf := map[string]string{}
	for _, s := range sites {
		siteOf[s.peer] = s.name
	}
	var out []transfer
	for line := range strings.Lines(string(b)) {
		how := ""
		switch {
		case strings.Contains(line, `msg="fetched image"`):
			how = "fetched"
		case strings.Contains(line, `msg="took image"`):
			how = "pushed"
		default:
			continue
		}
		kv := logging.ParseText(line)
		t := transfer{at: kv["time"], image: kv["image"], to: to, how: how}
		t.bytes, _ = strconv.ParseInt(kv["bytes"], 10, 64)
		t.seconds, _ = strconv.ParseFloat(kv["seconds"], 64)
		if t.seconds <= 0 {
			continue
		}
		t.from = siteOf[kv["peer"]]
		switch {
		case t.from != "":
		case how == "pushed":
			t.from = "site-a via registry-cli"
		default:
			t.from = kv["peer"]
		}
		if how == "fetched" {
			t.how = "fetched on need"
		} else {
			t.how = "pushed by registry-cli add"
		}
		out = append(out, t)
	}
	return out
}

// shortImage abbreviates an image ID.
func shortImage(id string) string {
	if hex, ok := strings.CutPrefix(id, "sha256:"); ok && len(hex) > 12 {
		return "sha256:" + hex[:12]
	}
	return id
}
