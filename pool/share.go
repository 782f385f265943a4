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
	a, shares := shareIndexed(capacity, members)
	a.Shares = make(map[string]int64, len(members))
	for i, m := range members {
		a.Shares[m.ID] = shares[i]
	}
	return a
}

// shareIndexed is Share with the shares by index of members (and no
// Shares map): a pool's turn looks them up by index, not by ID.
func shareIndexed(capacity int64, members []Member) (Allocation, []int64) {
	if slices.IsSortedFunc(members, byOrg) {
		return shareSorted(capacity, members)
	}
	perm := make([]int, len(members))
	for i := range perm {
		perm[i] = i
	}
	slices.SortFunc(perm, func(i, j int) int { return byOrg(members[i], members[j]) })
	sorted := make([]Member, len(members))
	for k, i := range perm {
		sorted[k] = members[i]
	}
	a, flat := shareSorted(capacity, sorted)
	shares := make([]int64, len(members))
	for k, i := range perm {
		shares[i] = flat[k]
	}
	return a, shares
}

// shareSorted is Share of members sorted by byOrg, by index.
func shareSorted(capacity int64, members []Member) (Allocation, []int64) {
	var a Allocation
	flat := make([]int64, len(members))
	orgs := groupSorted(members, flat)
	left := capacity
	for k := range orgs {
		o := &orgs[k]
		o.cand = unknown
		for i, m := range o.members {
			s := max(m.Min, 0) // KEDA keeps the minimum whatever is asked
			if m.GPUs <= 0 {
				s = max(s, m.Demand)
			}
			o.shares[i] = s
			a.Demanded += max(m.Demand, m.Min, 0) * max(m.GPUs, 0)
			o.gpus += s * max(m.GPUs, 0)
		}
		left -= o.gpus
	}
	if left < 0 {
		a.Overcommitted = true
	}
	for {
		o, i := next(orgs, left)
		if o == nil {
			break
		}
		o.shares[i]++
		o.gpus += o.members[i].GPUs
		left -= o.members[i].GPUs
		o.cand = unknown // only the org that took a replica changed
	}
	a.Granted = capacity - left
	return a, flat
}

// org is an org's members, their shares so far (by index) and the GPUs
// they hold, and which member takes its next replica.
type org struct {
	id      orgKey
	weight  int64
	members []Member
	shares  []int64
	gpus    int64
	// cand is the member wanting, as last found, or none, or unknown. As
	// left only shrinks and only the org that took a replica changes, it
	// stays right until that org takes one or it no longer fits.
	cand int
}

const (
	none    = -1
	unknown = -2
)

// orgKey names an org, or a member of no org (an org of its own).
type orgKey struct {
	alone bool
	name  string
}

// groupSorted cuts members, sorted by byOrg, into orgs, each with its
// part of shares; a member of no org is an org of its own.
func groupSorted(members []Member, shares []int64) []org {
	orgs := make([]org, 0, 8)
	for i := 0; i < len(members); {
		key := keyOf(members[i])
		j := i + 1
		for j < len(members) && keyOf(members[j]) == key {
			j++
		}
		orgs = append(orgs, org{id: key, weight: max(members[i].Weight, 1), members: members[i:j:j], shares: shares[i:j:j]})
		i = j
	}
	return orgs
}

// byOrg orders members by org (members of no org first, as orgs of
// their own), then by ID: as orgKey.compare orders their orgs.
func byOrg(a, b Member) int {
	switch aAlone, bAlone := a.Org == "", b.Org == ""; {
	case aAlone != bAlone:
		if aAlone {
			return -1
		}
		return 1
	case !aAlone && a.Org != b.Org:
		return cmp.Compare(a.Org, b.Org)
	}
	return cmp.Compare(a.ID, b.ID)
}

func keyOf(m Member) orgKey {
	if m.Org == "" {
		return orgKey{alone: true, name: m.ID}
	}
	return orgKey{name: m.Org}
}

// next is the org, and its member, that takes the next replica: the
// lowest GPUs per weight after it among orgs with a member that wants
// more and whose next replica fits in left; nil when none.
func next(orgs []org, left int64) (*org, int) {
	var best *org
	var bestM Member
	bestI := none
	for k := range orgs {
		o := &orgs[k]
		i := o.wanting(left)
		if i == none {
			continue
		}
		m := o.members[i]
		// The lowest level after the replica: (o.gpus+m.GPUs)/o.weight,
		// compared without division. Taking the level after, not before,
		// keeps an org of big replicas from overshooting one of small.
		if best == nil || (o.gpus+m.GPUs)*best.weight < (best.gpus+bestM.GPUs)*o.weight {
			best, bestM, bestI = o, m, i
		}
	}
	return best, bestI
}

// wanting is the index of o's member with the fewest GPUs that wants
// another replica that fits in left, or none.
func (o *org) wanting(left int64) int {
	if o.cand == none || o.cand >= 0 && o.members[o.cand].GPUs <= left {
		return o.cand
	}
	best := none
	for i, m := range o.members {
		s := o.shares[i]
		if m.GPUs <= 0 || s >= m.Demand || m.GPUs > left {
			continue
		}
		if best == none || s*m.GPUs < o.shares[best]*o.members[best].GPUs {
			best = i
		}
	}
	o.cand = best
	return best
}
