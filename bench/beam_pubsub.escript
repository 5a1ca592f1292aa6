%% -*- erlang -*-
%%! -noshell -start_epmd false -name bench_a@127.0.0.1 -setcookie foundation_bench -kernel inet_dist_use_interface {127,0,0,1}
%% BEAM node -> node pub/sub for bench/report.py: a pg publisher on this VM, one subscriber on a
%% peer VM, over Erlang distribution on loopback (127.0.0.1 -> 127.0.0.2), 93-byte payloads.
%% No epmd: both VMs listen on the port in ERL_FLAGS="-erl_epmd_port PORT" (set by the report),
%% each on its own loopback address only. The peer VM is stopped at the end.
%% Run: ERL_FLAGS="-erl_epmd_port 47411" escript bench/beam_pubsub.escript MESSAGES
-mode(compile).
main([CountText]) ->
    Count = list_to_integer(CountText),
    {ok, Peer, Node} = peer:start_link(#{
        name => bench_b, host => "127.0.0.2", longnames => true,
        args => ["-start_epmd", "false", "-setcookie", "foundation_bench", "-kernel", "inet_dist_use_interface", "{127,0,0,2}"]
    }),
    pg:start_link(),
    {ok, _} = erpc:call(Node, pg, start, [pg]),
    Source = "-module(bench_sub).\n-export([run/2]).\n"
        "run(Parent, Count) -> ok = pg:join(topic, self()), Parent ! joined, loop(Parent, Count).\n"
        "loop(Parent, 0) -> Parent ! done;\n"
        "loop(Parent, K) -> receive {msg, _} -> loop(Parent, K - 1) end.\n",
    {ok, Module, Binary} = compile:forms(forms(Source), [binary]),
    {module, Module} = erpc:call(Node, code, load_binary, [Module, "bench_sub.erl", Binary]),
    Parent = self(),
    Sub = spawn(Node, Module, run, [Parent, Count]),
    receive joined -> ok after 10000 -> error(no_join) end,
    wait_members(50),
    Payload = binary:copy(<<"x">>, 93),
    {Micros, _} = timer:tc(fun() ->
        publish(Count, Payload),
        receive done -> ok after 60000 -> error(timeout) end
    end),
    io:format("pg_node_to_node_msgs_per_s ~B~n", [round(Count / (Micros / 1.0e6))]),
    exit(Sub, kill),
    peer:stop(Peer).

wait_members(0) -> error(no_members);
wait_members(N) ->
    case pg:get_members(topic) of [] -> timer:sleep(100), wait_members(N - 1); _ -> ok end.

publish(0, _) -> ok;
publish(N, Payload) ->
    [M ! {msg, Payload} || M <- pg:get_members(topic)],
    publish(N - 1, Payload).

forms(Source) ->
    {ok, Tokens, _} = erl_scan:string(Source),
    split(Tokens, [], []).

split([], [], Forms) -> lists:reverse(Forms);
split([{dot, _} = Dot | Rest], Acc, Forms) ->
    {ok, Form} = erl_parse:parse_form(lists:reverse([Dot | Acc])),
    split(Rest, [], [Form | Forms]);
split([Token | Rest], Acc, Forms) -> split(Rest, [Token | Acc], Forms).
