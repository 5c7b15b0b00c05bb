module github.com/wsgate/wsgate

go 1.26

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/gorilla/websocket v1.5.3
)
