-- wrk script: realistic ~1 KB message_new / wall_reply_new bodies for community 1001, each with a unique
-- event_id (thread prefix + counter), signed with the secret in $VKHOOK_LOAD_SECRET.
local secret = os.getenv("VKHOOK_LOAD_SECRET") or ""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("prefix", string.format("%08x", math.random(0, 0x7fffffff)))
  table.insert(threads, thread)
end

local text = "Здравствуйте! Подскажите, пожалуйста, до скольки вы работаете в субботу и можно ли заказать торт " ..
  "заранее? Хотим забрать его к обеду, нас будет человек двенадцать, нужен без орехов. Спасибо!"

local message = '{"type":"message_new","event_id":"%s","v":"5.199","object":{"message":{"date":1764300000,' ..
  '"from_id":2,"id":%d,"out":0,"attachments":[],"conversation_message_id":%d,"fwd_messages":[],"important":false,' ..
  '"is_hidden":false,"peer_id":2,"random_id":0,"text":"%s"},"client_info":{"button_actions":["text","vkpay",' ..
  '"open_app","location","open_link","callback"],"keyboard":true,"inline_keyboard":true,"carousel":true,' ..
  '"lang_id":0}},"group_id":1001,"secret":"%s"}'

local comment = '{"type":"wall_reply_new","event_id":"%s","v":"5.199","object":{"id":%d,"from_id":2,' ..
  '"date":1764300000,"text":"%s","post_id":17,"owner_id":-1001,"parents_stack":[],"post_owner_id":-1001,' ..
  '"thread":{"count":0,"items":[],"can_post":true,"show_reply_button":true,"groups_can_post":true},' ..
  '"likes":{"count":0,"user_likes":0,"can_like":1,"can_publish":1}},"group_id":1001,"secret":"%s"}'

local like = '{"type":"like_add","event_id":"%s","v":"5.199","object":{"liker_id":%d,"object_type":"post",' ..
  '"object_owner_id":-1001,"object_id":17,"thread_reply_id":0,"post_id":0},"group_id":1001,"secret":"%s"}'

-- VKHOOK_LOAD_MIX=likes: 80 % like_add (a viral post), the rest comments and messages.
local likes = os.getenv("VKHOOK_LOAD_MIX") == "likes"

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local event_id = string.format("%s%032x", prefix, counter)
  local body
  if likes and counter % 5 ~= 0 then
    body = string.format(like, event_id, 1000 + counter, secret)
  elseif counter % 2 == 0 then
    body = string.format(message, event_id, counter, counter, text, secret)
  else
    body = string.format(comment, event_id, counter, text, secret)
  end
  return wrk.format("POST", "/vk/callback", headers, body)
end

bad = 0

-- Any answer other than exactly `ok` with HTTP 200 counts as an error.
function response(status, headers, body)
  if status ~= 200 or body ~= "ok" then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, thread in ipairs(threads) do
    total_bad = total_bad + (thread:get("bad") or 0)
  end
  io.write(string.format("NOT_OK %d\n", total_bad))
end
