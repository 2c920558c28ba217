// Package services holds the registry-cli configs of the demo services
// (hello, calculator, sensor, aggregator, analytics), two per service:
// <name>.exec.json registers it for the process runtime and
// <name>.docker.json builds a FROM scratch image of it. It has no code;
// its test checks the configs with the parsers registry-cli uses. See
// README.md for how to register them.
package services
