package director

import "github.com/prometheus/client_golang/prometheus"

// leaderGauge exports kumi_director_leader: 1 from Start until the director stops. A director
// runs only while it holds its lock (LockFile, or the Lease `kumi director` leads with), so the
// gauge says "this replica leads"; followers export no director metrics at all, and the alert
// KumiDirectorWithoutLeader (install/observability/kumi-alerts.yaml) fires on absent(… == 1).
func (d *Director) leaderGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kumi_director_leader",
		Help: "1 while this director replica leads (holds its lock or lease) and runs, else 0."}, func() float64 {
		select {
		case <-d.stopped:
			return 0
		default:
			return 1
		}
	})
}
