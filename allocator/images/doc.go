// Package images moves Docker images between the nodes of the private
// network, so that a Docker service runs on any Docker node and not only
// where its image was built. Nothing leaves the network: the registry
// records an image's ID, never the image.
//
// Three small parts, each behind what uses it:
//
//   - Holders: a node finds the peers holding an image through the DHT
//     (provider records under Namespace(id), nearest first);
//   - Fetcher: a node that lacks an image fetches it over Protocol from
//     the nearest holder that answers, loads it, and checks that it loaded
//     as the ID asked for (anything else is removed and refused);
//     concurrent needs share one transfer;
//   - Server: a node sends what it holds (at most a few at once; "busy"
//     beyond that) and takes images that registry-cli hands it (Push).
//
// A Keeper announces what a node holds, reports it for the node record
// (placement prefers holders) and removes, after a grace period, images
// no registered service uses any more.
//
// Only images registered by ID (sha256:…) travel: an ID says which image a
// holder must send and lets the receiver check it got that one. Layers
// are not deduplicated on the wire: an image moves as its whole `docker
// save` stream.
package images
