// Command printargs stands in for the proxy in imagebuild's tests: it
// prints, as one JSON object, its arguments, the instance contract's
// environment, its working directory and the files under /app, and exits 0.
package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

type report struct {
	Args  []string           `json:"args"`
	Env   map[string]*string `json:"env"` // nil: unset
	Wd    string             `json:"wd"`
	Files map[string]string  `json:"files"` // path: "file 0755", "dir", "symlink -> target"
}

func main() {
	r := report{Args: os.Args[1:], Env: map[string]*string{}, Files: map[string]string{}}
	for _, k := range []string{"PROXY_PORT", "PROXY_IP", "SERVICE_PORT", "P2P_BOOTSTRAPS", "P2P_PSK", "METRICS_PORT"} {
		if v, ok := os.LookupEnv(k); ok {
			r.Env[k] = &v
		}
	}
	r.Wd, _ = os.Getwd()
	_ = filepath.WalkDir("/app", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			r.Files[p] = "symlink -> " + target
		case d.IsDir():
			r.Files[p] = "dir"
		default:
			info, _ := d.Info()
			r.Files[p] = fmt.Sprintf("file %04o", info.Mode().Perm())
		}
		return nil
	})
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
