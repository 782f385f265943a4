package app

import (
	"github.com/orgscaler/orgscaler/api"
)

// knativeServices is what Explain lists of an org's Knative Services.
func (a *App) knativeServices() api.KnativeServices {
	if a.knative == nil {
		return nil
	}
	return a.knative
}
