// Command testtask is the stand-in workload of the runtime conformance
// suite, built statically into the FROM scratch image of the Docker
// runtime's tests. $PHYSARUM_TESTTASK selects what it does; see
// runtimetest.RunTask and the runtimetest.Mode constants.
package main

import (
	"fmt"
	"os"

	"github.com/physarum-p2p/physarum/allocator/runtimetest"
)

func main() {
	code, ok := runtimetest.RunTask()
	if !ok {
		fmt.Fprintf(os.Stderr, "testtask: set %s to a mode\n", runtimetest.EnvTask)
		code = 2
	}
	os.Exit(code)
}
