//! The manual parts of `--help` that are not about one flag: how to connect and authenticate,
//! the output formats and exit status, and examples for each subcommand. Kept verbatim (clap
//! does not rewrap them), so the columns line up in a terminal of 100 characters.

/// After the top-level `--help` (not `-h`).
pub(crate) const TOP: &str = r#"Connecting and authenticating:
  The broker authenticates each session with a token: a JWT naming your organisation, user and
  roles, signed by the operator or an identity provider. Each connection option can also come from
  the environment, so a shell sets them once:

    HERALD_TOKEN        the token (--token); required
    HERALD_SERVER       the broker's UDP address, IP:PORT (--server; default 127.0.0.1:7443)
    HERALD_SERVER_NAME  the name its certificate must carry (--server-name; default localhost)
    HERALD_CERT         PEM certificate(s) to trust: the broker's own or a CA (--cert; default
                        herald-data/tls/cert.pem, which a broker on its embedded default writes)
    HERALD_DEVICE       this device's id (--device; default cli)

  A development broker (`herald-broker` with no config) mints tokens for you:
    export HERALD_TOKEN=$(herald-broker token --org demo --user alice)
    herald ping

  A production broker whose certificate chains to a public CA:
    herald --server 203.0.113.10:7443 --server-name chat.example.com --system-roots ping

Output:
  Results go to stdout, diagnostics to stderr. By default results are lines for people: a leading
  word, then key=value pairs. With --json each command prints one JSON object, and `listen`,
  `call start` and `call join` print one object per line as events happen; fields are snake_case,
  enums lowercase words, absent values null. docs/SDK.md ("The herald CLI") lists every shape.

Exit status:
  0 on success; 1 when the command fails, with the broker's error code (NOT_FOUND, FORBIDDEN,
  TOKEN_EXPIRED, ...) in the message; 2 for a malformed command line. With --json a failure is one
  line on stderr: {"error":{"code":"NOT_FOUND","message":"..."}}.

Examples:
  herald group create ops bob carol            # prints the new group's id, say 7
  herald send 7 "deploy at ten"                # sent seq=2
  herald history 7 --backward --limit 5        # the five newest entries
  herald --json history 7 | jq -r '.entries[] | select(.kind == "message") | .text'
  HERALD_TOKEN=$BOB herald --json listen       # one JSON object per delivery

`herald <command> --help` explains each command, with examples."#;

pub(crate) const PING: &str = "Examples:
  herald ping                                  # four pings, half a second apart
  herald ping --count 10 --interval 100ms
  herald --json ping -c 3 | jq .avg_ms";

pub(crate) const SEND: &str = r#"Examples:
  herald send 7 "hello"                        # sent seq=2
  herald send --direct bob "lunch?"            # opens the direct conversation if needed
  herald send 7 "standup" --at +10m            # scheduled id=... deliver_at=...
  herald send 7 "gone soon" --expire-in 1h --expire-after-read 30s
  herald send 7 "order 42 shipped" --id order-42   # a retry prints `(duplicate)`
  herald --json send 7 "hi"                    # {"status":"sent","conversation_id":7,"seq":3,...}"#;

pub(crate) const RESCHEDULE: &str = "Examples:
  herald reschedule 7 m-1 +1h                  # deliver an hour from now instead
  herald reschedule 7 m-1 2026-11-26T15:00:00Z
  herald reschedule 7 m-1 --cancel             # never deliver it";

pub(crate) const LISTEN: &str = r#"Examples:
  herald listen                                # until Ctrl-C
  herald listen --count 1                      # wait for the next entry, print it, exit
  herald listen --resync                       # fetch what a slow read made the broker drop
  herald --json listen | jq -r 'select(.type == "entry") | .text'"#;

pub(crate) const GROUP: &str = "Examples:
  herald group create ops bob carol            # prints the group's id, say 7
  herald group add 7 dave erin                 # updated seq=2
  herald group remove 7 erin                   # updated seq=3
  herald group members 7                       # alice owner / bob member / ...";

pub(crate) const HISTORY: &str = r#"Examples:
  herald history 7                             # the first 100 entries
  herald history 7 --from 250 --limit 50       # seq 250 onwards
  herald history 7 --backward --limit 1        # the newest entry
  herald --json history 7 | jq '.entries[-1].seq'"#;

pub(crate) const CONVERSATIONS: &str = r#"Examples:
  herald conversations
  herald --json conversations | jq '.conversations[] | select(.kind == "group") | .conversation_id'"#;

pub(crate) const READ: &str = "Examples:
  herald read 7 12                             # read conv=7 read_seq=12 delivered_seq=12";

pub(crate) const RECEIPTS: &str = "Examples:
  herald receipts 7 2                          # receipts conv=7 seq=2 read=3 delivered=5 members=6
  herald receipts 7 2 --unread                 # then one `unread USER` a line
  herald --json receipts 7 2 --read --limit 500";

pub(crate) const RECALL: &str = "Examples:
  herald recall 7 2                            # recalled seq=2 event_seq=9";

pub(crate) const SETTINGS: &str = "Examples:
  herald settings 7                            # conv=7 receipts=on retention=off
  herald settings 7 --receipts off
  herald settings 7 --retention 7d             # new messages recall themselves after a week";

pub(crate) const DING: &str = r#"Examples:
  herald ding send 7 --to bob --to carol --text "server down, call me"   # ding id=3 recipients=2 ...
  herald ding send 7 --to bob --seq 12 --policy urgent --sms-text "Check Herald"
  herald ding ack 7 3                          # as bob or carol
  herald ding status 7 3                       # counts, then `user state steps` lines
  herald ding again 7 3                        # DING those who have not acknowledged
  herald ding cancel 7 3"#;

pub(crate) const CHECKIN: &str = "Examples:
  herald checkin --lat 31.2304 --lon 121.4737                 # accepted id=... site=hq
  herald checkin --lat 31.2304 --lon 121.4737 --kind out --bssid aa:bb:cc:dd:ee:ff
  herald --json checkin --lat 31.25 --lon 121.47 --kind field --accuracy 5";

pub(crate) const ATTENDANCE: &str = "Examples:
  herald attendance today
  herald attendance today --date 2026-11-26
  herald --json attendance today | jq .summary.late_minutes";

pub(crate) const CALL: &str = "Examples:
  herald call start --conversation 7           # ring every member; prints `call id=ID ...`, then events
  herald call start --to bob --muted           # a call with bob alone
  herald call join 12                          # as bob, from another terminal
  herald call mute 12 --all                    # host: mute everyone else
  herald call share 12                         # start sharing the screen
  herald call leave 12                         # this device leaves; `end` ends it for everyone";
