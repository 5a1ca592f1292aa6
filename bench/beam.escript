%% -*- erlang -*-
%%! -noshell
%% BEAM reference figures for bench/report.py: `:global` lookup on a 10,000-name registry and
%% pg pub/sub within one VM (no network). Run: escript bench/beam.escript ROUNDS
-mode(compile).
main([RoundsText]) ->
    Rounds = list_to_integer(RoundsText),
    Names = 10000,
    Idle = fun Loop() -> receive stop -> ok; _ -> Loop() end end,
    Pids = [begin P = spawn(Idle), yes = global:register_name({svc, I}, P), P end
            || I <- lists:seq(1, Names)],
    Keys = list_to_tuple([{svc, rand:uniform(Names)} || _ <- lists:seq(1, 1000)]),
    Lookup = fun(N) -> LoopL = fun L(0) -> ok; L(I) -> _ = global:whereis_name(element((I rem 1000) + 1, Keys)), L(I - 1) end, LoopL(N) end,
    Lookup(10000),
    Best = lists:min([element(1, timer:tc(fun() -> Lookup(Rounds) end)) || _ <- [1, 2, 3]]),
    io:format("global_lookup_ns ~.1f~n", [Best * 1000 / Rounds]),
    Empty = lists:min([element(1, timer:tc(fun() -> LoopE = fun E(0) -> ok; E(I) -> _ = element((I rem 1000) + 1, Keys), E(I - 1) end, LoopE(Rounds) end)) || _ <- [1, 2, 3]]),
    io:format("loop_overhead_ns ~.1f~n", [Empty * 1000 / Rounds]),
    {ok, _} = pg:start_link(),
    Messages = Rounds,
    Parent = self(),
    Sub = spawn(fun() -> ok = pg:join(topic, self()), Parent ! joined, Count = fun C(0) -> Parent ! done; C(K) -> receive {msg, _} -> C(K - 1) end end, Count(Messages) end),
    receive joined -> ok end,
    Payload = binary:copy(<<"x">>, 93),
    {Micros, _} = timer:tc(fun() ->
        [[M ! {msg, Payload} || M <- pg:get_members(topic)] || _ <- lists:seq(1, Messages)],
        receive done -> ok end
    end),
    io:format("pg_local_msgs_per_s ~B~n", [round(Messages / (Micros / 1.0e6))]),
    [P ! stop || P <- Pids],
    exit(Sub, kill),
    io:format("otp ~s~n", [erlang:system_info(otp_release)]).
