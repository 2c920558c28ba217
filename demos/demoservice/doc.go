// Package demoservice holds what Physarum's demo services (hello,
// calculator, sensor, aggregator, analytics) share, so that each of them
// keeps only its own handlers and command line.
//
// Every demo uses the server half: where to listen (ListenAddr,
// CheckListen, PortFromEnv), the http.Server it runs (NewServer), serving
// until SIGTERM or SIGINT and then shutting down gracefully (Serve), and
// answering JSON and health checks (WriteJSON, Healthz).
//
// The stages of the pipeline demo (sensor -> aggregator -> analytics) also
// use the stage half: where the local proxy is (ProxyBase, CheckProxy),
// calling the next stage through it (Stage, NewStage, Stage.Post), and
// reporting which stage failed (StageError, ErrorReply).
package demoservice
