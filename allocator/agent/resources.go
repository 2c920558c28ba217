package agent

import (
	"fmt"
	"sync"

	"github.com/physarum-p2p/physarum/common/wire"
)

// resources is admission control: what the node offers and what admitted
// instances have been promised. Reserve succeeds only while every promise
// still fits, so concurrent deploys can never over-commit. Safe for
// concurrent use.
type resources struct {
	mu          sync.Mutex
	cpu, memory int // capacity: millicores, MiB
	usedCPU     int
	usedMemory  int
}

func newResources(cpu, memory int) *resources {
	return &resources{cpu: cpu, memory: memory}
}

// reserve promises cpu and memory to an instance, or refuses with a
// no_capacity error that says what is short.
func (r *resources) reserve(cpu, memory int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.usedCPU+cpu > r.cpu {
		return wire.Errorf(wire.CodeNoCapacity, "no capacity: needs %d millicores, %d of %d free", cpu, r.cpu-r.usedCPU, r.cpu)
	}
	if r.usedMemory+memory > r.memory {
		return wire.Errorf(wire.CodeNoCapacity, "no capacity: needs %d MiB of memory, %d of %d free", memory, r.memory-r.usedMemory, r.memory)
	}
	r.usedCPU += cpu
	r.usedMemory += memory
	return nil
}

// force records a promise made before a restart (an adopted instance),
// even past capacity: the instance runs whatever the flags say now.
func (r *resources) force(cpu, memory int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.usedCPU += cpu
	r.usedMemory += memory
}

// release returns an instance's promise.
func (r *resources) release(cpu, memory int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.usedCPU -= cpu
	r.usedMemory -= memory
	if r.usedCPU < 0 || r.usedMemory < 0 {
		panic(fmt.Sprintf("resources released twice: cpu %d memory %d", r.usedCPU, r.usedMemory))
	}
}

// free returns what is left (possibly negative after adoption past a
// lowered capacity).
func (r *resources) free() (cpu, memory int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cpu - r.usedCPU, r.memory - r.usedMemory
}

func (r *resources) capacity() (cpu, memory int) {
	return r.cpu, r.memory
}
