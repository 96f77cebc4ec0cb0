# redis-server for the frontend's shared live-ticket store tests (frontend/store_redis_test.go):
# each test starts its own instance on 127.0.0.1 on a free port in a temporary directory.
apt_install redis-server redis-server
redis-server --version
