//! DingTalk messages through the crate's public API: parsed as a template renders them, prepared
//! for a robot, serialized byte for byte as DingTalk expects, and sent to a signed URL.

use dingrelay::dingtalk::message::MessageBody;
use dingrelay::dingtalk::sign::signed_url;
use dingrelay::dingtalk::validate::{MSG_UUID_RESERVE, Prepared, encoded_len};
use dingrelay::dingtalk::{Endpoint, MAX_BODY_BYTES, Message, Robot, prepare};
use secrecy::SecretString;
use url::Url;

fn robot(keywords: &[&str], secret: Option<&str>) -> Robot {
    Robot {
        name: "ops".into(),
        endpoint: Endpoint::DryRun {
            secret: secret.map(|s| SecretString::from(s.to_owned())),
        },
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
    }
}

fn parse(json: &str) -> Message {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("parses: {e}\n{json}"))
}

fn prepared(json: &str, robot: &Robot) -> Prepared {
    prepare(parse(json), robot).unwrap_or_else(|e| panic!("accepted: {e}\n{json}"))
}

/// One message of each type, in DingTalk's casing, already valid: preparing them changes nothing.
const VALID: [&str; 6] = [
    r#"{"msgtype":"text","text":{"content":"[relay] build #1842 failed on main @13800001111 @manager01"},"at":{"atMobiles":["13800001111"],"atUserIds":["manager01"],"isAtAll":true},"msgUuid":"outbox-42"}"#,
    r#"{"msgtype":"link","link":{"title":"Release v2.3.0 published","text":"Changelog: faster relay startup.","messageUrl":"https://example.com/releases/v2.3.0","picUrl":"https://example.com/img/release.png"}}"#,
    r#"{"msgtype":"markdown","markdown":{"title":"Disk alert db-3","text":"> usage **93%** on /var  \n@13800001111"},"at":{"atMobiles":["13800001111"]}}"#,
    r#"{"msgtype":"actionCard","actionCard":{"title":"Deploy approval needed","text":"Deploy api-gw to prod","singleTitle":"Open approval","singleURL":"https://example.com/approve/991","btnOrientation":"0","hideAvatar":"0"}}"#,
    r#"{"msgtype":"actionCard","actionCard":{"title":"Incident INC-77","text":"**INC-77** latency > 2s","btns":[{"title":"Acknowledge","actionURL":"https://example.com/inc/77/ack"},{"title":"Runbook","actionURL":"dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fexample.com&pc_slide=false"}],"btnOrientation":"1","hideAvatar":"1"}}"#,
    r#"{"msgtype":"feedCard","feedCard":{"links":[{"title":"Weekly report","messageURL":"https://example.com/r/w32","picURL":"https://example.com/img/w32.png"},{"title":"SLO summary","messageURL":"https://example.com/slo","picURL":"@lADPDgQ9qT5rZ9bN"}]}}"#,
];

#[test]
fn valid_messages_round_trip_byte_for_byte() {
    let robot = robot(&[], None);
    for json in VALID {
        let prepared = prepared(json, &robot);
        assert_eq!(prepared.cut_bytes, 0);
        assert_eq!(
            serde_json::to_string(&prepared.message).expect("serializes"),
            json
        );
        assert_eq!(encoded_len(&prepared.message), json.len());
    }
}

#[test]
fn the_casing_traps_do_not_parse() {
    // `link` wants messageUrl/picUrl, feedCard links want messageURL/picURL, buttons actionURL.
    for wrong in [
        r#"{"msgtype":"link","link":{"title":"t","text":"t","messageURL":"https://example.com"}}"#,
        r#"{"msgtype":"feedCard","feedCard":{"links":[{"title":"t","messageUrl":"https://example.com","picUrl":"https://example.com/p.png"}]}}"#,
        r#"{"msgtype":"actionCard","actionCard":{"title":"t","text":"t","btns":[{"title":"t","actionUrl":"https://example.com"}]}}"#,
        r#"{"msgtype":"action_card","action_card":{"title":"t","text":"t","singleTitle":"t","singleURL":"https://example.com"}}"#,
        r#"{"msgtype":"actionCard","actionCard":{"title":"t","text":"t","singleTitle":"t","singleURL":"https://example.com","btnOrientation":1}}"#,
    ] {
        assert!(serde_json::from_str::<Message>(wrong).is_err(), "{wrong}");
    }
}

#[test]
fn an_oversized_alert_is_cut_checked_and_sent_to_a_signed_url() {
    let secret = "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
    let robot = robot(&["告警"], Some(secret));
    let details = "- 实例 db-3 磁盘使用率 93% 😱 \"/var\"\\n\n".repeat(1_000);
    let json = serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "title": "【告警】磁盘", "text": format!("### 告警 @13800001111\n{details}") },
        "at": { "atMobiles": [" 13800001111 ", "13800001111"], "atUserIds": ["zhangsan"] },
    })
    .to_string();
    let prepared = prepared(&json, &robot);

    assert!(prepared.cut_bytes > 0);
    assert!(encoded_len(&prepared.message) <= MAX_BODY_BYTES - MSG_UUID_RESERVE);
    let MessageBody::Markdown { markdown } = &prepared.message.body else {
        panic!("still markdown");
    };
    assert!(
        markdown
            .text
            .starts_with("### 告警 @13800001111\n- 实例 db-3")
    );
    assert!(markdown.text.ends_with(&format!(
        "\n\n…({} more bytes cut)\n\n@zhangsan",
        prepared.cut_bytes
    )));
    let at = prepared.message.at.as_ref().expect("mentions kept");
    assert_eq!(at.at_mobiles, ["13800001111"]);

    let webhook =
        Url::parse("https://oapi.dingtalk.com/robot/send?access_token=t0k3n").expect("parses");
    let url = signed_url(&webhook, robot.endpoint.secret(), 1_582_163_555_000);
    assert_eq!(
        url.as_str(),
        "https://oapi.dingtalk.com/robot/send?access_token=t0k3n&timestamp=1582163555000\
         &sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D"
    );
}

#[test]
fn errors_name_the_dingtalk_field() {
    let robot = robot(&["alert"], None);
    let cases = [
        (
            r#"{"msgtype":"markdown","markdown":{"title":" ","text":"alert"}}"#,
            "markdown.title: is required and must not be empty",
        ),
        (
            r#"{"msgtype":"feedCard","feedCard":{"links":[{"title":"alert","messageURL":"https://example.com","picURL":"img.png"}]}}"#,
            "feedCard.links[0].picURL: is not an absolute URL (relative URL without a base)",
        ),
        (
            r#"{"msgtype":"link","link":{"title":"alert","text":"t","messageUrl":"https://example.com"},"at":{"isAtAll":true}}"#,
            "at: DingTalk ignores mentions on link messages (use text or markdown)",
        ),
    ];
    for (json, expected) in cases {
        match prepare(parse(json), &robot) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => assert_eq!(e.to_string(), expected),
        }
    }
}
