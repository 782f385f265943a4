package pool

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func shares(a Allocation, ids ...string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += "/"
		}
		out += fmt.Sprint(a.Shares[id])
	}
	return out
}

// The figures: 8 GPUs of 1 per replica.
func TestShareFigures(t *testing.T) {
	one := func(org string, weight, demand int64) Member {
		return Member{ID: org + "/model", Org: org, Weight: weight, GPUs: 1, Demand: demand}
	}
	for _, c := range []struct {
		name    string
		members []Member
		want    string
	}{
		{"three orgs each wanting 8", []Member{one("a", 1, 8), one("b", 1, 8), one("c", 1, 8)}, "3/3/2"},
		{"weights 2:1:1", []Member{one("a", 2, 8), one("b", 1, 8), one("c", 1, 8)}, "4/2/2"},
		{"the first wants only 1", []Member{one("a", 1, 1), one("b", 1, 8), one("c", 1, 8)}, "1/4/3"},
		{"4 GPUs a replica wanting 2, beside 1 wanting 8", []Member{
			{ID: "a/model", Org: "a", GPUs: 4, Demand: 2}, {ID: "b/model", Org: "b", GPUs: 1, Demand: 8}}, "1/4"},
	} {
		a := Share(8, c.members)
		var ids []string
		for _, m := range c.members {
			ids = append(ids, m.ID)
		}
		if got := shares(a, ids...); got != c.want || a.Granted > 8 || a.Overcommitted {
			t.Errorf("%s: %s (granted %d, overcommitted %v); want %s", c.name, got, a.Granted, a.Overcommitted, c.want)
		}
	}
}

// Within an org, its GPUs go to its members by max-min too; a member of
// no org is an org of its own; minimums are granted first, and when they
// alone exceed the pool the pool says so and grants them.
func TestShareWithinOrgsAndMinimums(t *testing.T) {
	a := Share(6, []Member{
		{ID: "acme/classifier", Org: "acme", GPUs: 1, Demand: 10},
		{ID: "acme/summarizer", Org: "acme", GPUs: 1, Demand: 1},
		{ID: "globex/model", Org: "globex", GPUs: 1, Demand: 10, Min: 2},
		{ID: "shared/worker", GPUs: 1, Demand: 10},
	})
	// acme 2 (1 each, max-min, summarizer satisfied), globex 2, worker 2.
	if got := shares(a, "acme/classifier", "acme/summarizer", "globex/model", "shared/worker"); got != "1/1/2/2" {
		t.Errorf("shares %s; want 1/1/2/2", got)
	}
	over := Share(3, []Member{{ID: "a", GPUs: 2, Demand: 1, Min: 1}, {ID: "b", GPUs: 2, Demand: 3, Min: 1}})
	if !over.Overcommitted || over.Shares["a"] != 1 || over.Shares["b"] != 1 || over.Granted != 4 {
		t.Errorf("minimums over the pool: %+v; want each its minimum, overcommitted, 4 granted", over)
	}
	free := Share(0, []Member{{ID: "cpu", GPUs: 0, Demand: 5}})
	if free.Shares["cpu"] != 5 || free.Granted != 0 {
		t.Errorf("a member of no GPU in an empty pool: %+v; want its whole demand, nothing granted", free)
	}
}

// Over random pools: every share is within [min, demand] (min above
// demand: min), the pool is never exceeded unless the minimums alone do,
// no GPU that a wanting member's next replica fits in is left idle, no
// org could take a replica from a better-off one and stay below it, and
// the order members come in changes nothing.
func TestShareProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for n := range 3000 {
		capacity := r.Int64N(64)
		var ms []Member
		for i := range 1 + r.IntN(8) {
			ms = append(ms, Member{ID: fmt.Sprintf("m%d", i), Org: fmt.Sprintf("o%d", r.IntN(4)), Weight: 1 + r.Int64N(3),
				GPUs: r.Int64N(5), Demand: r.Int64N(10), Min: r.Int64N(3) / 2})
		}
		for i := range ms { // an org has one weight
			for j := range ms {
				if ms[j].Org == ms[i].Org {
					ms[j].Weight = ms[i].Weight
				}
			}
		}
		a := Share(capacity, ms)
		used, mins := int64(0), int64(0)
		for _, m := range ms {
			s := a.Shares[m.ID]
			if s < m.Min || (s > max(m.Demand, m.Min)) {
				t.Fatalf("case %d: %s got %d; want within [%d, %d]: %+v", n, m.ID, s, m.Min, max(m.Demand, m.Min), ms)
			}
			used += s * m.GPUs
			mins += m.Min * m.GPUs
		}
		if used != a.Granted || (used > capacity && !a.Overcommitted) || a.Overcommitted != (mins > capacity) {
			t.Fatalf("case %d: used %d of %d, granted %d, overcommitted %v, minimums %d", n, used, capacity, a.Granted, a.Overcommitted, mins)
		}
		for _, m := range ms {
			if m.GPUs > 0 && a.Shares[m.ID] < m.Demand && m.GPUs <= capacity-used {
				t.Fatalf("case %d: %s wants more and %d GPUs are idle: %+v %+v", n, m.ID, capacity-used, ms, a.Shares)
			}
		}
		if n%2 == 0 { // every replica of one size: max-min is exact there
			for i := range ms {
				ms[i].GPUs = 1 + int64(n%3)
			}
			a = Share(capacity, ms)
			fairAcrossOrgs(t, n, ms, a)
		}
		rev := make([]Member, len(ms))
		for i, m := range ms {
			rev[len(ms)-1-i] = m
		}
		b := Share(capacity, rev)
		for _, m := range ms {
			if a.Shares[m.ID] != b.Shares[m.ID] {
				t.Fatalf("case %d: the members' order changed %s's share", n, m.ID)
			}
		}
	}
}

// fairAcrossOrgs, for replicas of one size: an org x that wants more
// could not take a replica from another org y (above y's minimums) and
// still stay at or below y's GPUs per weight: the shares are max-min
// fair. (With replicas of several sizes, an org's next replica is its
// least-served member's, whatever its size; TestShareFigures covers it.)
func fairAcrossOrgs(t *testing.T, n int, ms []Member, a Allocation) {
	t.Helper()
	gpus, weight := map[string]int64{}, map[string]int64{}
	for _, m := range ms {
		gpus[m.Org] += a.Shares[m.ID] * m.GPUs
		weight[m.Org] = max(m.Weight, 1)
	}
	for _, x := range ms {
		if x.GPUs <= 0 || a.Shares[x.ID] >= x.Demand {
			continue
		}
		for _, y := range ms {
			if y.Org == x.Org || a.Shares[y.ID] <= y.Min {
				continue
			}
			// Moving one replica from y to x: x's level after must not be
			// below y's level after, or the move would have been fairer.
			xAfter, yAfter := gpus[x.Org]+x.GPUs, gpus[y.Org]-y.GPUs
			if xAfter*weight[y.Org] <= yAfter*weight[x.Org] {
				t.Fatalf("case %d: org %s (%d GPUs, weight %d) wants more while org %s (%d, weight %d) could give it one: %+v %+v",
					n, x.Org, gpus[x.Org], weight[x.Org], y.Org, gpus[y.Org], weight[y.Org], ms, a.Shares)
			}
		}
	}
}
