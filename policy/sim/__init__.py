"""The warm-up simulator: the real policy engine and store, a simulated clock, modelled ISPs.

`policyd simulate` plays a scenario (conf/scenarios/*.toml) through `PolicyService.grant` and
`PolicyService.feedback`, the calls policyd serves, so weeks of a warm-up run in seconds with the
schedules, buckets and rules an operator is about to deploy. Modules, one job each:

- scenario: the scenario file, typed and validated; policy_setup: the engine settings it runs with
- audience: the recipients; planner: what the sender queues when
- lanes: the MTA's site lanes and retry schedule; replies: ISP replies through the product's classifier
- isp_model (+ isp_defaults): the mailbox providers' side; incidents: what goes wrong, by time
- events: late reports (complaints, DSNs); simulator: the loop; stats, output, chart: the results
"""
