package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/physarum-p2p/physarum/registry"
)

// ErrBusy means another member is joining; the joiner should retry.
var ErrBusy = errors.New("another registry member is joining; retry shortly")

const membershipLock = "/physarum/locks/membership"

func isNotLearner(err error) bool {
	return errors.Is(err, rpctypes.ErrMemberNotLearner) ||
		strings.Contains(err.Error(), rpctypes.ErrMemberNotLearner.Error()) && !strings.Contains(err.Error(), "in sync")
}

// Admit decides how the registry-service named name joins: as a learner
// (added here, and told the initial cluster to start with) while there
// are fewer than voterCap voters, else as a client of the cluster. A
// member of that name already in the cluster (its data dir was lost) is
// removed first. Membership changes are serialized by a lock in etcd.
func (m *Member) Admit(ctx context.Context, name string, req registry.JoinRequest, voterCap int) (registry.JoinResponse, error) {
	if len(req.PeerURLs) == 0 {
		return registry.JoinResponse{}, errors.New("join request without peer URLs")
	}
	sess, err := concurrency.NewSession(m.cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return registry.JoinResponse{}, fmt.Errorf("membership lock session: %w", err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, membershipLock)
	if err := mu.Lock(ctx); err != nil {
		return registry.JoinResponse{}, fmt.Errorf("take membership lock: %w", err)
	}
	defer mu.Unlock(context.WithoutCancel(ctx))

	list, err := m.cli.MemberList(ctx)
	if err != nil {
		return registry.JoinResponse{}, fmt.Errorf("list members: %w", err)
	}
	voters, learners := 0, 0
	var clientURLs []string
	for _, mem := range list.Members {
		if mem.Name == name || (mem.Name == "" && samePeerURL(mem.PeerURLs, req.PeerURLs)) {
			// The joiner was a member before and lost its data, or died
			// between being added and starting: start over.
			m.log.Info("removing stale member before it rejoins", "member", name, "id", mem.ID)
			if _, err := m.cli.MemberRemove(ctx, mem.ID); err != nil {
				return registry.JoinResponse{}, fmt.Errorf("remove stale member %s: %w", name, err)
			}
			continue
		}
		if mem.IsLearner {
			learners++
		} else {
			voters++
			clientURLs = append(clientURLs, mem.ClientURLs...)
		}
	}
	if voters >= voterCap {
		return registry.JoinResponse{Client: true, ClientURLs: clientURLs}, nil
	}
	if learners > 0 {
		return registry.JoinResponse{}, ErrBusy
	}
	added, err := addLearner(ctx, m.cli, req.PeerURLs)
	if err != nil {
		return registry.JoinResponse{}, err
	}
	var parts []string
	for _, mem := range added.Members {
		n := mem.Name
		if mem.ID == added.Member.ID {
			n = name // etcd leaves the new member's name empty
		}
		if n == "" {
			continue // another member added but never started
		}
		for _, u := range mem.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	m.log.Info("admitted registry member as learner", "member", name, "peer_urls", req.PeerURLs)
	return registry.JoinResponse{
		InitialCluster: strings.Join(parts, ","),
		ClusterToken:   clusterToken,
		ClientURLs:     append(clientURLs, req.ClientURLs...),
	}, nil
}

// addLearner adds a learner, retrying while a just-started cluster
// reports itself unhealthy (the leader waits for its peers to be connected
// for a few seconds before allowing membership changes).
func addLearner(ctx context.Context, cli *clientv3.Client, peerURLs []string) (*clientv3.MemberAddResponse, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := cli.MemberAddAsLearner(ctx, peerURLs)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, rpctypes.ErrTooManyLearners) {
			return nil, ErrBusy
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return nil, fmt.Errorf("add learner: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("add learner: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func samePeerURL(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// Members lists the etcd members, with the leader marked.
func (m *Member) Members(ctx context.Context) ([]registry.Member, error) {
	list, err := m.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var leader uint64
	for _, ep := range m.cli.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, time.Second) // a dead endpoint must not eat the request
		st, err := m.cli.Status(sctx, ep)
		cancel()
		if err == nil {
			leader = st.Leader
			break
		}
	}
	out := make([]registry.Member, len(list.Members))
	var wg sync.WaitGroup
	for i, mem := range list.Members {
		role := registry.RoleVoter
		if mem.IsLearner {
			role = registry.RoleLearner
		}
		out[i] = registry.Member{
			Name: mem.Name, Role: role, PeerURLs: mem.PeerURLs, ClientURLs: mem.ClientURLs,
			Leader: mem.ID == leader, Started: mem.Name != "",
		}
		// Healthy: the member answers on its client URL now. Listed
		// members can be long dead; this is what an operator wants to know.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, u := range mem.ClientURLs {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := m.cli.Status(sctx, u)
				cancel()
				if err == nil {
					out[i].Healthy = true
					return
				}
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
