package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Store is one Docker daemon's image store, as transfers need it.
type Store interface {
	// Size returns the size of a held image; ErrNotHeld when absent.
	Size(ctx context.Context, id string) (int64, error)
	// Save streams the image as `docker save` writes it.
	Save(ctx context.Context, id string) (io.ReadCloser, error)
	// Load loads a `docker save` stream and returns the IDs of the images
	// it held.
	Load(ctx context.Context, r io.Reader) ([]string, error)
	// Remove removes an image; one that a container uses is refused.
	Remove(ctx context.Context, id string) error
	// List returns the IDs of every image in the store.
	List(ctx context.Context) ([]string, error)
	// InUse returns the IDs of the images containers (of any node) use.
	InUse(ctx context.Context) (map[string]bool, error)
}

// ErrNotHeld: the store lacks the image.
var ErrNotHeld = errors.New("image not held")

// ErrBadImage: the daemon could not load the stream as an image.
var ErrBadImage = errors.New("not a loadable image")

// DockerStore is a Store over the Engine API.
type DockerStore struct {
	cli *client.Client
}

var _ Store = (*DockerStore)(nil)

// NewDockerStore talks to the daemon at host ("" for $DOCKER_HOST or the
// platform's default socket).
func NewDockerStore(host string) (*DockerStore, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &DockerStore{cli: cli}, nil
}

// Close closes the client's connections.
func (d *DockerStore) Close() error { return d.cli.Close() }

// Host is the daemon's address.
func (d *DockerStore) Host() string { return d.cli.DaemonHost() }

// Size implements Store.
func (d *DockerStore) Size(ctx context.Context, id string) (int64, error) {
	res, err := d.cli.ImageInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return 0, fmt.Errorf("%s: %w", id, ErrNotHeld)
	}
	if err != nil {
		return 0, fmt.Errorf("inspect image %s: %w", id, err)
	}
	if ValidID(id) && res.ID != id {
		// Asked by ID, found something else (a tag spelled like an ID):
		// not the image asked for.
		return 0, fmt.Errorf("%s: %w", id, ErrNotHeld)
	}
	return res.Size, nil
}

// Save implements Store.
func (d *DockerStore) Save(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := d.cli.ImageSave(ctx, []string{id})
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%s: %w", id, ErrNotHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", id, err)
	}
	return rc, nil
}

// Load implements Store: the daemon reports each image it loaded as a
// progress message, and a failure as an error message after a 200.
func (d *DockerStore) Load(ctx context.Context, r io.Reader) ([]string, error) {
	res, err := d.cli.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	defer res.Close()
	var ids []string
	dec := json.NewDecoder(io.LimitReader(res, 1<<20))
	for {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return ids, fmt.Errorf("load image: read the daemon's answer: %w", err)
		}
		if m.Error != "" {
			return ids, fmt.Errorf("load image: %s: %w", m.Error, ErrBadImage)
		}
		for line := range strings.Lines(m.Stream) {
			line = strings.TrimSpace(line)
			if id, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
				ids = append(ids, id)
			} else if ref, ok := strings.CutPrefix(line, "Loaded image: "); ok {
				// A tagged image: the daemon names it, not its ID.
				if insp, err := d.cli.ImageInspect(ctx, ref); err == nil {
					ids = append(ids, insp.ID)
				}
			}
		}
	}
	return ids, nil
}

// Remove implements Store.
func (d *DockerStore) Remove(ctx context.Context, id string) error {
	_, err := d.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// List implements Store.
func (d *DockerStore) List(ctx context.Context) ([]string, error) {
	res, err := d.cli.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, im := range res.Items {
		ids = append(ids, im.ID)
	}
	return ids, nil
}

// InUse implements Store.
func (d *DockerStore) InUse(ctx context.Context) (map[string]bool, error) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	used := make(map[string]bool, len(res.Items))
	for _, c := range res.Items {
		used[c.ImageID] = true
	}
	return used, nil
}

var _ Puller = (*DockerStore)(nil)

// Pull implements Puller: it pulls ref from the registry it names and
// reads the progress to its end (the pull is done when the stream ends).
func (d *DockerStore) Pull(ctx context.Context, ref string) error {
	rc, err := d.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}
