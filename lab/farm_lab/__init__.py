"""The whole farm on one machine, for `make demo` and for the tests: gearmand, a real
Keystone on 127.0.0.1 (the cloud under test), the status server and workers, each started
and stopped by PID. Not deployed anywhere: the roles install worker, client and server."""
