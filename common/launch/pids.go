package launch

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PIDsWithEnv lists the live processes whose environment holds kv
// ("KEY=value"), among those this user may read.
func PIDsWithEnv(kv string) []int {
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var out []int
	for _, p := range envs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains("\x00"+string(b)+"\x00", "\x00"+kv+"\x00") {
			continue // gone, not ours to read, or not it
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// instanceIDVar is common/instenv.InstanceID, which this package cannot
// import: instenv reaches package testing through libp2p's DHT (see
// TestDoesNotImportTesting; TestInstanceIDVar checks they agree).
const instanceIDVar = "PHYSARUM_INSTANCE_ID"

// InstancePIDs lists the processes of an instance (its proxy and its
// program): those whose environment names it.
func InstancePIDs(id string) []int { return PIDsWithEnv(instanceIDVar + "=" + id) }
