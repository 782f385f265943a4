// Package pool shares a GPU pool's capacity between the workloads that
// want it: weighted max-min (water-filling) between orgs by their pool
// weight, then max-min between an org's members, in whole replicas, never
// more than a member asks nor less than its minimum. Share is a pure
// function of its inputs, so every replica that sees the same members
// computes the same shares.
package pool

import (
	"cmp"
	"slices"
)

// Member is one workload in a pool, as the pool sees it at one instant.
type Member struct {
	ID  string // the trigger: namespace/name and metric; ties break by it
	Org string // "" for a workload of no org (it is its own org)
	// Weight is the org's pool weight (default 1): an org of weight 2 gets
	// twice the GPUs of one of weight 1, where both want more.
	Weight int64
	// GPUs is what one replica costs (gpusPerReplica); 0 costs nothing.
	GPUs int64
	// Demand is the replicas it would get without the pool; Min its
	// ScaledObject's minReplicaCount, granted whatever the pool holds.
	Demand, Min int64
}

// Allocation is a pool's shares at one instant.
type Allocation struct {
	Shares map[string]int64 // replicas per member ID
	// Demanded and Granted are GPUs: what the members ask, what they get.
	Demanded, Granted int64
	// Overcommitted says the members' minimums alone exceed the capacity:
	// each gets its minimum, and Granted is more than the pool.
	Overcommitted bool
}

// Share divides capacity GPUs between members. Each member starts at its
// minimum; then, one replica at a time, the org whose GPUs per unit of
// weight would be lowest after it, among those whose next replica still
// fits, takes one more, for its member with the fewest GPUs. Ties
// break by org, then member ID, so the result depends on nothing but the
// inputs. A member whose replicas cost no GPU gets its whole demand.
func Share(capacity int64, members []Member) Allocation {
	a := Allocation{Shares: make(map[string]int64, len(members))}
	orgs := groupByOrg(members)
	left := capacity
	for _, o := range orgs {
		for _, m := range o.members {
			s := max(m.Min, 0) // KEDA keeps the minimum whatever is asked
			if m.GPUs <= 0 {
				s = max(s, m.Demand)
			}
			a.Shares[m.ID] = s
			a.Demanded += max(m.Demand, m.Min, 0) * max(m.GPUs, 0)
			o.gpus += s * max(m.GPUs, 0)
		}
		left -= o.gpus
	}
	if left < 0 {
		a.Overcommitted = true
	}
	for {
		o, m := next(orgs, a.Shares, left)
		if o == nil {
			break
		}
		a.Shares[m.ID]++
		o.gpus += m.GPUs
		left -= m.GPUs
	}
	a.Granted = capacity - left
	return a
}

// org is an org's members and the GPUs granted to them so far.
type org struct {
	id      string
	weight  int64
	members []Member
	gpus    int64
}

// groupByOrg puts members in orgs, orgs and members in ID order; a member
// of no org is an org of its own.
func groupByOrg(members []Member) []*org {
	byID := map[string]*org{}
	var orgs []*org
	for _, m := range members {
		key := "org:" + m.Org
		if m.Org == "" {
			key = "member:" + m.ID
		}
		o := byID[key]
		if o == nil {
			o = &org{id: key, weight: max(m.Weight, 1)}
			byID[key] = o
			orgs = append(orgs, o)
		}
		o.members = append(o.members, m)
	}
	slices.SortFunc(orgs, func(a, b *org) int { return cmp.Compare(a.id, b.id) })
	for _, o := range orgs {
		slices.SortFunc(o.members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	}
	return orgs
}

// next is the org, and its member, that takes the next replica: the
// lowest GPUs per weight after it among orgs with a member that wants
// more and whose next replica fits in left; nil when none.
func next(orgs []*org, shares map[string]int64, left int64) (*org, Member) {
	var best *org
	var bestM Member
	for _, o := range orgs {
		m, ok := o.wanting(shares, left)
		if !ok {
			continue
		}
		// The lowest level after the replica: (o.gpus+m.GPUs)/o.weight,
		// compared without division. Taking the level after, not before,
		// keeps an org of big replicas from overshooting one of small.
		if best == nil || (o.gpus+m.GPUs)*best.weight < (best.gpus+bestM.GPUs)*o.weight {
			best, bestM = o, m
		}
	}
	return best, bestM
}

// wanting is o's member with the fewest GPUs that wants another replica
// that fits in left.
func (o *org) wanting(shares map[string]int64, left int64) (Member, bool) {
	var best Member
	found := false
	for _, m := range o.members {
		s := shares[m.ID]
		if m.GPUs <= 0 || s >= m.Demand || m.GPUs > left {
			continue
		}
		if !found || s*m.GPUs < shares[best.ID]*best.GPUs {
			best, found = m, true
		}
	}
	return best, found
}
