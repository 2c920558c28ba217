// Package demoservice holds what Physarum's demo services (hello,
// calculator, sensor, aggregator, analytics) share, so that each of them
// keeps only its own handlers and command line.
//
// Every demo uses the command half: its main is
//
//	os.Exit(demoservice.Main(name, os.Stderr, parse, run))
//
// where parse reads the command line through a Command (the -listen flag
// and SERVICE_PORT every demo has, the usage text, the service's own
// flags and their check, ErrFlags for a bad command line) and run serves
// until Main's context ends on SIGTERM or SIGINT. Main owns the exit
// codes: 0 after -help or a clean shutdown, 2 for a bad command line, 1
// for any other error. InstanceID names the instance for the demos that
// say who answered.
//
// Every demo uses the server half: where to listen (ListenAddr,
// CheckListen, PortFromEnv), the http.Server it runs (NewServer), serving
// until its context ends and then shutting down gracefully
// (ListenAndServe, Serve), and answering JSON and health checks
// (WriteJSON, Healthz).
//
// The stages of the pipeline demo (sensor -> aggregator -> analytics) also
// use the stage half: where the local proxy is (ProxyBase, CheckProxy,
// CheckStageFlags), calling the next stage through it (Stage, NewStage,
// Stage.Post), and reporting which stage failed (StageError, ErrorReply).
//
// The tests the demos share are in package demotest.
package demoservice
