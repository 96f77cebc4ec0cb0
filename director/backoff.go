package director

import (
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// newBackoff is the director's one retry policy (watching servers, fetching matches, allocating):
// exponential from initial, capped at limit, each pause jittered by up to half again, so loops (and
// directors) that failed together do not retry in step. Step() gives the next pause; start a new
// one after a success.
func newBackoff(initial, limit time.Duration) *wait.Backoff {
	return &wait.Backoff{Duration: initial, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: limit}
}
