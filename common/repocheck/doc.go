// Package repocheck holds tests of the repository's own hygiene: every
// package has a doc comment, and only main.go files print or exit. It has
// no code of its own.
package repocheck
