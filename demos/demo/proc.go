package main

import (
	"os"
	"path/filepath"

	"github.com/physarum-p2p/physarum/common/launch"
)

// spawn starts the binary bin of the demo network as name, with env added
// to the demo's; its stdout goes to name.out and its log (stderr) to
// name.log in the work directory. Teardown stops it.
func (d *demo) spawn(name, bin string, args []string, env ...string) (*launch.Proc, error) {
	p, err := launch.Start(launch.Cmd{
		Name: name, Path: filepath.Join(d.o.bin, bin), Args: args,
		Env:     append(append(os.Environ(), d.env...), env...),
		OutFile: filepath.Join(d.dir, name+".out"),
		ErrFile: filepath.Join(d.dir, name+".log"),
	})
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}
