// NOT COMPILED HERE. Illustrative Unreal Engine 5 code for kumi's frontend; see ../../README.md.
// Module dependencies (Build.cs): "HTTP", "Json", "JsonUtilities", "Engine".
#include "KumiMatchmakingSubsystem.h"

#include "HttpModule.h"
#include "GenericPlatform/GenericPlatformHttp.h"
#include "Interfaces/IHttpResponse.h"
#include "Dom/JsonObject.h"
#include "Serialization/JsonReader.h"
#include "Serialization/JsonSerializer.h"
#include "Kismet/GameplayStatics.h"
#include "TimerManager.h"

// The frontend holds a long-poll at most --max-wait; ask for a bit less than the HTTP timeout.
static const TCHAR* PollWait = TEXT("25s");
static constexpr float HttpTimeoutSeconds = 35.f;

TSharedRef<IHttpRequest, ESPMode::ThreadSafe> UKumiMatchmakingSubsystem::NewRequest(const FString& Verb, const FString& Path) const
{
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Req = FHttpModule::Get().CreateRequest();
	Req->SetVerb(Verb);
	Req->SetURL(FrontendUrl + Path);
	// The player id is the JWT subject; it is never sent as a field.
	Req->SetHeader(TEXT("Authorization"), TEXT("Bearer ") + PlayerJwt);
	Req->SetHeader(TEXT("Accept"), TEXT("application/json"));
	Req->SetTimeout(HttpTimeoutSeconds);
	return Req;
}

void UKumiMatchmakingSubsystem::FindSession(const TMap<FString, FString>& StringAttributes, const TMap<FString, float>& NumberAttributes)
{
	// POST /v1/tickets  {"attributes": {"mode": "voice", "chat_group": "guild-42", "skill": 1450}}
	TSharedRef<FJsonObject> Attrs = MakeShared<FJsonObject>();
	for (const auto& KV : StringAttributes) { Attrs->SetStringField(KV.Key, KV.Value); }
	for (const auto& KV : NumberAttributes) { Attrs->SetNumberField(KV.Key, KV.Value); }
	TSharedRef<FJsonObject> Body = MakeShared<FJsonObject>();
	Body->SetObjectField(TEXT("attributes"), Attrs);
	FString Json;
	FJsonSerializer::Serialize(Body, TJsonWriterFactory<>::Create(&Json));

	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Req = NewRequest(TEXT("POST"), TEXT("/v1/tickets"));
	Req->SetHeader(TEXT("Content-Type"), TEXT("application/json"));
	Req->SetContentAsString(Json);
	Req->OnProcessRequestComplete().BindUObject(this, &UKumiMatchmakingSubsystem::OnCreated);
	InFlight = Req;
	Req->ProcessRequest();
}

void UKumiMatchmakingSubsystem::OnCreated(FHttpRequestPtr Req, FHttpResponsePtr Resp, bool bOk)
{
	// 201: new ticket. 200: our live ticket with the same attributes (safe retry).
	// 409: another live ticket with different attributes -> Cancel() first. 400 names the bad
	// attribute, 401 means the JWT was refused, 429 carries Retry-After.
	if (!bOk || !Resp.IsValid() || (Resp->GetResponseCode() != 200 && Resp->GetResponseCode() != 201))
	{
		Fail(Resp, TEXT("create ticket"));
		return;
	}
	if (!HandleTicketJson(Resp->GetContentAsString()))
	{
		Poll();
	}
}

void UKumiMatchmakingSubsystem::Poll()
{
	// GET /v1/tickets/{id}?wait=25s returns as soon as the ticket is assigned, or after 25 s with
	// state SEARCHING; poll again. (GET /v1/tickets/{id}/events is the server-sent-events variant.)
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Req =
		NewRequest(TEXT("GET"), FString::Printf(TEXT("/v1/tickets/%s?wait=%s"), *FGenericPlatformHttp::UrlEncode(TicketId), PollWait));
	Req->OnProcessRequestComplete().BindUObject(this, &UKumiMatchmakingSubsystem::OnPolled);
	InFlight = Req;
	Req->ProcessRequest();
}

void UKumiMatchmakingSubsystem::OnPolled(FHttpRequestPtr Req, FHttpResponsePtr Resp, bool bOk)
{
	if (bOk && Resp.IsValid() && Resp->GetResponseCode() == 429)
	{
		const float After = FCString::Atof(*Resp->GetHeader(TEXT("Retry-After")));
		GetGameInstance()->GetTimerManager().SetTimer(RetryTimer, this, &UKumiMatchmakingSubsystem::Poll, FMath::Max(After, 1.f));
		return;
	}
	if (!bOk || !Resp.IsValid() || Resp->GetResponseCode() != 200)
	{
		// 404: the ticket expired unassigned (--ticket-lifetime) or was cancelled: file a new one.
		Fail(Resp, TEXT("wait for assignment"));
		return;
	}
	if (!HandleTicketJson(Resp->GetContentAsString()))
	{
		Poll();
	}
}

bool UKumiMatchmakingSubsystem::HandleTicketJson(const FString& Body)
{
	// {"id":"...","state":"ASSIGNED","assignment":{"address":"203.0.113.7:7777","session_id":"...",
	//  "server_token":"eyJ...","server_token_expire_time":"2026-11-22T01:02:03Z"}, ...}
	TSharedPtr<FJsonObject> Ticket;
	if (!FJsonSerializer::Deserialize(TJsonReaderFactory<>::Create(Body), Ticket) || !Ticket.IsValid())
	{
		return false;
	}
	TicketId = Ticket->GetStringField(TEXT("id"));
	if (Ticket->GetStringField(TEXT("state")) != TEXT("ASSIGNED"))
	{
		return false;
	}
	const TSharedPtr<FJsonObject> A = Ticket->GetObjectField(TEXT("assignment"));
	FKumiAssignment Out;
	Out.Address = A->GetStringField(TEXT("address"));
	Out.SessionId = A->GetStringField(TEXT("session_id"));
	Out.ServerToken = A->GetStringField(TEXT("server_token"));
	FDateTime::ParseIso8601(*A->GetStringField(TEXT("server_token_expire_time")), Out.TokenExpiry);
	OnAssigned.Broadcast(Out);
	Travel(Out);
	return true;
}

void UKumiMatchmakingSubsystem::Travel(const FKumiAssignment& A)
{
	// The token travels as a URL option; the server reads it in AGameModeBase::PreLogin. A JWT is
	// base64url with dots, so it needs no escaping inside "?token=...". It is single use and expires
	// in about a minute: travel right away, and on a failed join file a new ticket instead of retrying.
	UGameplayStatics::OpenLevel(GetGameInstance()->GetWorld(), FName(*A.Address), /*bAbsolute=*/true,
		FString::Printf(TEXT("token=%s"), *A.ServerToken));
}

void UKumiMatchmakingSubsystem::Cancel()
{
	if (InFlight.IsValid()) { InFlight->CancelRequest(); }
	// DELETE /v1/tickets/current cancels the caller's live ticket (idempotent).
	NewRequest(TEXT("DELETE"), TEXT("/v1/tickets/current"))->ProcessRequest();
	TicketId.Reset();
}

void UKumiMatchmakingSubsystem::Fail(FHttpResponsePtr Resp, const FString& What)
{
	const int32 Code = Resp.IsValid() ? Resp->GetResponseCode() : 0;
	// Error bodies are JSON {"error":{"code":400,"status":"INVALID_ARGUMENT","message":"...","field":"region"}};
	// the message says what to fix, field names the refused attribute.
	const FString Body = Resp.IsValid() ? Resp->GetContentAsString() : TEXT("no response");
	OnFailed.Broadcast(Code, What + TEXT(": ") + Body);
}
