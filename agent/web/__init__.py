"""The technician status page: HTML pages, a JSON API and Prometheus metrics, served by the agent.

`server.serve_agent(agent, stop)` runs it in the agent's event loop; `app.create_app(view,
actions, config)` builds the ASGI app from the narrow read interface (`view.AgentView`) and the
technician's `agent.actions.Actions`, so tests can use fakes of both.
"""
