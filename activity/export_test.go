package activity

// FireDue applies the rule to every org due by the store's clock now, as
// the scheduler's timer would: for tests outside the package that drive
// the clock.
func FireDue(s *Store) { s.sched.fireDue() }
