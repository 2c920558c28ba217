// Package docs holds Physarum's user documentation: the command reference
// (reference/*.md) and the operator's guide (operators-guide.md). It has no
// code of its own; its test keeps the reference in step with the binaries.
//
// Each reference file embeds, after a marker line such as
//
//	<!-- help:registry-cli add -->
//
// a fenced block holding exactly what that command prints for -help. The
// test builds the binaries, runs every marked command with -help and fails
// when a block differs from the output, or when a binary or a registry-cli
// command has no block. After changing a flag or a usage text, rewrite the
// blocks from the binaries with:
//
//	go test ./docs -run TestReferenceHelp -update
package docs
